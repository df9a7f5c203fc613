"""`config --example` leaves device.id to run time: copies on many SD cards must not share one id."""

from __future__ import annotations

import socket

from edge.compat import tomllib
from edge.config import example_toml, parse_config


def test_example_does_not_bake_in_this_host_name():
    text = example_toml()
    data = tomllib.loads(text)
    assert "id" not in data["device"]
    assert "# id = " in text
    assert parse_config(data).device.id == socket.gethostname()

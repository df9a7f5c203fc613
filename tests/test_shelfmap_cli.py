"""`shelfscan-agent shelfmap`: a counter's shelf map drawn as PNG and HTML, from a file and from the broker."""

from __future__ import annotations

import json

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.shelfmap_cli import colour
from tests.broker import Broker
from tests.conftest import run_cli

SHELFMAP = {
    "schema": "shelfscan.shelfmap",
    "scan_id": "aisle-7",
    "facings": 5,
    "gaps": 1,
    "unknown": 1,
    "counts": {"beans": 2, "milk": 2, "unknown": 1},
    "rows": [
        {
            "row": 0,
            "facings": 3,
            "gaps": 1,
            "items": [
                {"type": "facing", "label": "beans", "x0": 0, "x1": 50},
                {"type": "facing", "label": "beans", "x0": 50, "x1": 100},
                {"type": "gap", "x0": 100, "x1": 160},
                {"type": "facing", "label": "milk", "x0": 160, "x1": 210, "x0_m": 1.0, "x1_m": 1.2},
            ],
        },
        {
            "row": 1,
            "facings": 2,
            "gaps": 0,
            "items": [
                {"type": "facing", "label": "milk", "x0": 10, "x1": 70},
                {"type": "facing", "label": "unknown", "x0": 70, "x1": 130},
            ],
        },
    ],
}


def test_png_and_html_from_a_saved_map(tmp_path):
    src = tmp_path / "map.json"
    src.write_text(json.dumps(SHELFMAP))
    proc = run_cli("shelfmap", str(src), "--out", str(tmp_path / "map.png"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "out": str(tmp_path / "map.png"),
        "rows": 2,
        "facings": 5,
        "gaps": 1,
        "scan_id": "aisle-7",
    }
    img = cv2.imread(str(tmp_path / "map.png"))
    assert img.shape[0] > 100 and img.shape[1] == 1600
    beans = np.array(colour("beans"), np.uint8)
    assert (
        np.abs(img.astype(int) - beans).max(axis=2) == 0
    ).sum() > 1000  # the beans facings are drawn in their colour
    assert (img[..., 2] > 200).any() and ((img[..., 0] < 60) & (img[..., 2] > 200)).any()  # the gap in red
    assert run_cli("shelfmap", str(src), "--out", str(tmp_path / "map.html")).returncode == 0
    page = (tmp_path / "map.html").read_text()
    assert "<svg" in page and page.count("<rect") == 6 and "1.00-1.20 m" in page and "aisle-7" in page


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 3}')
    png, jpg = str(tmp_path / "m.png"), str(tmp_path / "m.jpg")
    for args, needle in (
        ([str(tmp_path / "none.json"), "--out", png], "cannot read a shelf map"),
        ([str(bad), "--out", png], "not a shelfmap"),
        ([str(bad), "--out", jpg], "write a .png or an .html"),
    ):
        proc = run_cli("shelfmap", *args)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )


def test_reads_the_retained_map_from_the_broker(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.publish("shop/robot-9/shelfmap", json.dumps(SHELFMAP), qos=1, retain=True).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        proc = run_cli(
            "shelfmap",
            "--device",
            "robot-9",
            "--prefix",
            "shop",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--out",
            str(tmp_path / "m.png"),
        )
        assert proc.returncode == 0, proc.stderr
        assert "2 rows, 5 facings, 1 gaps" in proc.stdout
        proc = run_cli(
            "shelfmap",
            "--device",
            "robot-0",
            "--prefix",
            "shop",
            "--broker",
            f"mqtt://127.0.0.1:{broker.port}",
            "--out",
            str(tmp_path / "m.png"),
        )
        assert proc.returncode == 2 and "no retained shelf map on shop/robot-0/shelfmap" in proc.stderr
    finally:
        broker.stop()

"""`config --check`: every problem the agent would meet at start, one line each, exit 2; `ok` only when it would run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.mqtt_helpers import agent_config


def check(cfg: Path) -> tuple[int, list[str]]:
    proc = run_cli("config", "--check", str(cfg))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr.strip().splitlines()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('kind = "video"\npath = "x.avi"\ncolour = 1', "unknown key 'source.colour'"),
        ('kind = "telescope"', "source.kind: Input should be"),
        ('kind = "video"', "source: source kind 'video' needs 'path'"),
    ],
)
def test_schema_errors_are_one_line(tmp_path, bundle, source, message):
    cfg = agent_config(tmp_path, 1883, bundle, source)
    rc, lines = check(cfg)
    assert rc == 2 and len(lines) == 1 and message in lines[0] and str(cfg) in lines[0], lines


def test_every_problem_is_listed_not_only_the_first(tmp_path, bundle):
    cfg = agent_config(
        tmp_path,
        1883,
        tmp_path / "no-bundle",
        f'kind = "video"\npath = "{tmp_path}/gone.avi"',
        mqtt={"tls": {"ca": str(tmp_path / "ca.pem")}},
    )
    rc, lines = check(cfg)
    assert rc == 2 and len(lines) == 3, lines
    assert all(line.startswith(f"shelfscan-agent config: error: {cfg}: ") for line in lines)
    assert "model:" in lines[0] and "no-bundle" in lines[0]
    assert "source (video):" in lines[1] and "gone.avi: video file not found" in lines[1]
    assert "mqtt.tls.ca:" in lines[2] and "file not found" in lines[2]
    schema = agent_config(tmp_path, 0, bundle, 'kind = "folder"\npath = "."', inference={"max_fps": -1})
    rc, lines = check(schema)
    assert rc == 2 and len(lines) == 2 and "inference.max_fps" in lines[0] and "mqtt.port" in lines[1], lines


def test_bad_files_and_a_state_dir_that_is_a_file(tmp_path, bundle):
    for text, message in ((b"\xff\xfe[device]", "not UTF-8 text"), (b"[device\n", "not valid TOML")):
        (tmp_path / "bad.toml").write_bytes(text)
        rc, lines = check(tmp_path / "bad.toml")
        assert rc == 2 and len(lines) == 1 and message in lines[0], lines
    rc, lines = check(tmp_path)
    assert rc == 2 and lines == [f"shelfscan-agent config: error: {tmp_path}: is a folder, not a configuration file"]
    (tmp_path / "state-file").write_text("x")
    cfg = agent_config(
        tmp_path,
        1883,
        bundle,
        f'kind = "folder"\npath = "{tmp_path}"',
        device={"state_dir": str(tmp_path / "state-file")},
    )
    rc, lines = check(cfg)
    assert rc == 2 and len(lines) == 1 and "device.state_dir" in lines[0] and "is a file" in lines[0], lines


def test_ok_only_when_the_agent_would_start(tmp_path, bundle):
    ok = agent_config(tmp_path, 1883, bundle, f'kind = "folder"\npath = "{tmp_path}"')
    rc, lines = check(ok)
    assert rc == 0, lines
    # the example: valid schema; what it names does not exist on this machine, and is said so
    (tmp_path / "example.toml").write_text(run_cli("config", "--example").stdout)
    rc, lines = check(tmp_path / "example.toml")
    assert rc == 2 and lines and not any("unknown key" in line or "missing required" in line for line in lines)
    assert "model:" in lines[0] and "/var/lib/shelfscan/bundles/current" in lines[0], lines

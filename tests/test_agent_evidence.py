"""Evidence images from a detect_classify agent against a real Mosquitto (the shelf pass of test_agent_facings).

Every ``unknown`` or weak facing message must be followed by an ``evidence`` message whose files
exist in ``state_dir/evidence``, match their size and sha256 and decode as JPEG; ``cmd/snapshot``
must give one too; confident facings must give none.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.mqtt_helpers import Subscriber, agent_config
from tests.storage import remount, small_tmpfs
from tests.test_agent import start_agent, validate

pytestmark = [pytest.mark.shared, pytest.mark.slow]
MIN_SCORE = 0.9  # high for the tiny classifier: many facings are weak, so the test cannot pass on none


def send(port: int, topic: str, body: dict) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="auditor")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def check_files(root: Path, doc: dict) -> dict[str, np.ndarray]:
    images = {}
    for f in doc["files"]:
        data = (root / f["name"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"], f
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.size > 0, f["name"]
        images[f["role"]] = image
    return images


def test_every_doubtful_facing_has_evidence_and_snapshot_works(tmp_path, broker, facing_models):
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    source = f'kind = "video"\npath = "{facing_models["video"]}"\nfps = 40'  # ~5 s: time for a snapshot mid-run
    cfg = agent_config(
        tmp_path,
        broker.port,
        facing_models["classifier"],
        source,
        model={"detector": str(facing_models["detector"])},
        inference={"pipeline": "detect_classify", "max_fps": 1000},
        counting={"min_hits": 2},
        evidence={"min_score": MIN_SCORE},
    )
    log = tmp_path / "agent.log"
    agent = start_agent(cfg, log)
    assert sub.wait_for(lambda s: s.of("facing"), 60), log.read_text()[-2000:]
    send(broker.port, "test/robot-1/cmd/snapshot", {"request_id": "audit-1"})
    assert agent.wait(120) == 0, log.read_text()[-3000:]
    assert sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")), 15)
    validate([m for m in sub.messages if not m[0].endswith("/pose")])  # evidence against its schema too
    root = tmp_path / "state" / "evidence"
    facings, evidence = sub.of("facing"), sub.of("evidence")
    doubtful = [f for f in facings if f["label"] == "unknown" or f["score"] < MIN_SCORE]
    assert doubtful, [(f["label"], f["score"]) for f in facings]
    by_track = {e["track_id"]: e for e in evidence if e["reason"] != "snapshot"}
    assert sorted(by_track) == sorted(f["track_id"] for f in doubtful)  # each doubtful facing, and only those
    for f in doubtful:
        e = by_track[f["track_id"]]
        assert (e["scan_id"], e["label"], e["score"]) == (f["scan_id"], f["label"], f["score"])
        assert e["reason"] == ("unknown" if f["label"] == "unknown" else "low_score")
        assert e["seq"] > f["seq"] and e["facing_frame_index"] == f["frame_index"]
        images = check_files(root, e)
        assert set(images) == {"crop", "frame"} and max(images["crop"].shape[:2]) <= 160
        assert images["frame"].shape[:2] == (240, 320)  # the 320x240 pass is under frame_max_side: as it is
    snaps = [e for e in evidence if e["reason"] == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["request_id"] == "audit-1" and snaps[0]["track_id"] is None
    assert set(check_files(root, snaps[0])) == {"frame"}
    assert sorted(p.name for p in root.iterdir()) == sorted(f["name"] for e in evidence for f in e["files"])
    stats = [d["evidence"] for d in sub.of("stats") if "evidence" in d]
    assert not stats or stats[-1]["failed"] == 0
    sub.close()


def test_read_only_evidence_folder_costs_no_facing(tmp_path, broker, facing_models):
    """A read-only evidence folder: one warning, every facing still published, no evidence message, agent exits 0."""
    sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
    source = f'kind = "video"\npath = "{facing_models["video"]}"\nfps = 1000'
    # min_score 1.0: every facing is weak, so each one tries to write
    cfg = agent_config(
        tmp_path,
        broker.port,
        facing_models["classifier"],
        source,
        model={"detector": str(facing_models["detector"])},
        inference={"pipeline": "detect_classify", "max_fps": 1000},
        counting={"min_hits": 2},
        evidence={"min_score": 1.0, "min_free_bytes": 0},
    )
    log = tmp_path / "agent.log"
    with small_tmpfs(tmp_path / "state" / "evidence", "1m") as folder:
        remount(folder, "ro")
        agent = start_agent(cfg, log)
        assert agent.wait(120) == 0, log.read_text()[-3000:]
    assert sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")), 15)
    final = [d for d in sub.of("counts") if d.get("final")][-1]
    assert final["facings"] == len(sub.of("facing")) > 0 and not sub.of("evidence")
    warnings = [line for line in log.read_text().splitlines() if "evidence not written" in line]
    assert len(warnings) == 1 and "Read-only file system" in warnings[0], warnings
    sub.close()

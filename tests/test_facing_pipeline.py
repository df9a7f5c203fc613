"""The detect_classify frame pipeline with real (tiny) models, and `shelfscan-agent bench --detector`."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from edge.agent_setup import build_pipeline
from edge.bundle import write_bundle
from edge.config import CountingConfig, InferenceConfig
from edge.detector import Detector
from edge.facing_pipeline import crop_boxes
from edge.labels import read_labels
from edge.pipelines import PipelineMode, ReportKind
from edge.preprocess import PreprocessSpec
from edge.runtime import Classifier
from tests.conftest import run_cli
from tests.mqtt_helpers import SCHEMAS
from trainer.photo_library import PhotoLibrary
from trainer.shelf_composer import compose

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def classifier_bundle(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "tiny-int8"
    write_bundle(
        out,
        tiny_models["int8"],
        read_labels(tiny_models["labels"]),
        PreprocessSpec(height=16, width=16),
        name="tiny",
        version="1",
        backbone="tiny",
        variant="int8",
    )
    return out


def test_crop_windows_grow_and_clip():
    boxes = np.array([[10, 20, 30, 60], [-5, 0, 10, 10], [90, 90, 120, 130]], np.float32)
    np.testing.assert_array_equal(
        crop_boxes(boxes, 0.0, 100, 100), [[10, 20, 30, 60], [0, 0, 10, 10], [90, 90, 100, 100]]
    )
    np.testing.assert_array_equal(crop_boxes(boxes[:1], 0.1, 100, 100), [[8, 16, 32, 64]])
    assert crop_boxes(np.zeros((0, 4), np.float32), 0.1, 10, 10).shape == (0, 4)


def test_pipeline_runs_every_stage_and_counts(tiny_detector, classifier_bundle, tmp_path):
    detector = Detector.from_bundle(tiny_detector["bundles"] / "run-int8", threads=1, score_threshold=0.05)
    classifier = Classifier.from_bundle(classifier_bundle, threads=1)
    pipeline = build_pipeline(
        {"detector": detector, "classifier": classifier},
        InferenceConfig(pipeline="detect_classify"),
        CountingConfig(min_hits=1),
    )
    assert pipeline.mode == PipelineMode.DETECT_CLASSIFY
    assert set(pipeline.models()) == {"classifier", "detector"}
    from tests.toydata import flat_photos

    library = PhotoLibrary.from_tree(flat_photos(tmp_path / "photos"))
    canvas = compose(library, 960, 480, seed=4, index=0).image
    pipeline.start_scan()
    reports = []
    for k in range(12):  # pan right by 40 px a frame
        reports += pipeline.process(np.ascontiguousarray(canvas[:, 40 * k : 40 * k + 480]), k / 10)
    reports += pipeline.end_scan()
    for stage in ("detect", "crops", "classify", "track", "frame"):
        assert len(pipeline.clock.samples[stage]) == 12, stage
    assert sum(pipeline.facings_per_frame) > 0
    counts = pipeline.counts()
    assert counts["facings"] == sum(counts["counts"].values()) == pipeline.counter.total
    assert {r.kind for r in reports} <= {ReportKind.FACING, ReportKind.GAP}
    assert sum(r.kind == ReportKind.FACING for r in reports) == counts["facings"]
    schema = json.loads((SCHEMAS / "facing.schema.json").read_text())
    for r in reports:
        if r.kind == ReportKind.FACING:
            envelope = {
                "schema": "shelfscan.facing",
                "schema_version": 2,
                "device_id": "d",
                "seq": 1,
                "ts": "2026-01-01T00:00:00.000Z",
                "model": None,
                "scan_id": "s",
                "location": "",
            }
            doc = envelope | r.body
            jsonschema.validate(doc, schema)
    assert pipeline.stats()["crop_failures"] == 0
    assert pipeline._classify(canvas[:1, :1]) == (None, 0.0)  # a degenerate crop casts no vote, never raises
    assert pipeline.stats()["crop_failures"] == 1


def test_flip_crops_averages_the_crop_and_its_mirror(tiny_detector, classifier_bundle):
    """inference.flip_crops: a crop's label and score come from the mean of its scores and its mirror's."""
    detector = Detector.from_bundle(tiny_detector["bundles"] / "run-int8", threads=1, score_threshold=0.05)
    classifier = Classifier.from_bundle(classifier_bundle, threads=1)
    models = {"detector": detector, "classifier": classifier}
    plain = build_pipeline(models, InferenceConfig(pipeline="detect_classify"), CountingConfig())
    flipped = build_pipeline(models, InferenceConfig(pipeline="detect_classify", flip_crops=True), CountingConfig())
    crop = np.zeros((160, 160, 3), np.uint8)
    crop[:, :, 2] = np.linspace(0, 255, 160, dtype=np.float32)[None, :]  # red rising left to right: not symmetric
    pre = classifier.crop_preprocessor(detector.settings.crop_resize)
    pre.from_bgr(crop)
    seen = classifier.scores_prepared(pre.buffer)
    pre.from_bgr(np.ascontiguousarray(crop[:, ::-1]))
    mirrored = classifier.scores_prepared(pre.buffer)
    best = int(np.argmax(seen + mirrored))
    mean = float(seen[best] + mirrored[best]) / 2
    assert mean != pytest.approx(float(seen.max()))  # else the test could not tell the two rules apart
    label, score = flipped._classify(crop)
    assert label == classifier.labels[best] and score == pytest.approx(mean)
    assert plain._classify(crop)[1] == pytest.approx(float(seen.max()))


def test_bench_times_the_detect_classify_pipeline(tiny_detector, classifier_bundle):
    proc = run_cli(
        "bench",
        str(classifier_bundle),
        "--detector",
        str(tiny_detector["bundles"] / "run-int8"),
        "--threads",
        "1",
        "--runs",
        "4",
        "--warmup",
        "1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "bench.schema.json").read_text()))
    row = doc["results"][0]
    assert row["pipeline"] == "detect_classify" and row["detector"]["variant"] == "int8"
    assert {"decode", "detect", "crops", "classify", "track", "publish", "total"} <= set(row["stages"])
    table = run_cli(
        "bench",
        str(classifier_bundle),
        "--detector",
        str(tiny_detector["bundles"] / "run-int8"),
        "--threads",
        "1",
        "--runs",
        "2",
    ).stdout
    assert "pipeline detect_classify" in table and "classify" in table

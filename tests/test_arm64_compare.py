"""The x86-vs-aarch64 comparer of `make check-arm64` (scripts/arm64/compare.py) catches what it must."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("arm64_compare", REPO / "scripts" / "arm64" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

DOC = {
    "model": {"sha256": "ab"},
    "preprocessing": {"height": 224},
    "output_kind": "probabilities",
    "results": [
        {
            "path": "/a/chelsea.png",
            "top_k": [{"label": "tiger cat", "score": 0.543}, {"label": "tabby", "score": 0.148}],
        },
        {"path": "/a/coffee.png", "top_k": [{"label": "espresso", "score": 0.965}, {"label": "cup", "score": 0.008}]},
    ],
}


def altered(change) -> dict:
    doc = copy.deepcopy(DOC)
    change(doc)
    return doc


def test_identical_and_within_tolerance_pass():
    assert compare.compare_classify(DOC, copy.deepcopy(DOC)) == []
    near = altered(lambda d: d["results"][0]["top_k"][0].update(score=0.543 - 4 / 256))  # measured worst case
    assert compare.compare_classify(DOC, near) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["results"][0]["top_k"][0].update(score=0.543 + 0.031), "score x86 0.543000"),
        (lambda d: d["results"][1]["top_k"].reverse(), "labels differ"),
        (lambda d: d["results"][1]["top_k"][1].update(label="eggnog"), "labels differ"),
        (lambda d: d["results"].pop(), "images differ"),
        (lambda d: d["results"][0].update(error="cannot decode"), "error"),
        (lambda d: d["model"].update(sha256="cd"), "model differs"),
        (lambda d: d["preprocessing"].update(height=192), "preprocessing differs"),
    ],
)
def test_differences_are_reported(change, message):
    problems = compare.compare_classify(DOC, altered(change))
    assert problems and any(message in p for p in problems), problems


def test_empty_results_are_not_agreement():
    assert compare.compare_classify({"results": []}, {"results": []}) == ["no results to compare"]


def test_arrays_bit_for_bit():
    a = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "f": np.linspace(0, 1, 5, dtype=np.float32)}
    assert compare.compare_arrays(a, {k: v.copy() for k, v in a.items()}) == []
    b = {k: v.copy() for k, v in a.items()}
    b["x"][1, 1] ^= 1
    b["f"][2] = np.nextafter(b["f"][2], np.float32(2))  # one ulp is a difference too
    assert [p.split(":")[0] for p in compare.compare_arrays(a, b)] == ["f", "x"]
    assert "1 of 12 values differ" in compare.compare_arrays(a, b)[1]
    assert "aarch64 int8" in compare.compare_arrays(a, {**a, "x": a["x"].view(np.int8)})[0]
    assert "only on x86 ['f']" in compare.compare_arrays(a, {"x": a["x"]})[0]

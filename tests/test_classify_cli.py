"""`shelfscan-agent classify` on files, folders and folder-per-class trees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli


def model_args(reference: Path) -> list[str]:
    return [
        "--model",
        str(reference / "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
    ]


@pytest.fixture
def tree(reference, tmp_path) -> Path:
    """Three classes; the ptq model says Egyptian cat for chelsea, so the 'tabby' row is a top-5 hit only."""
    root = tmp_path / "val"
    for folder, photo in [("Egyptian_cat", "chelsea"), ("espresso", "coffee"), ("tabby, tabby cat", "chelsea")]:
        (root / folder).mkdir(parents=True)
        shutil.copy(reference / "samples" / f"{photo}.png", root / folder / f"{photo}.png")
    return root


def test_tree_evaluation_json(tree, reference):
    proc = run_cli("classify", str(tree), *model_args(reference), "--json")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)["evaluations"][0]
    assert ev["images"] == 3 and ev["errors"] == 0
    assert ev["top1"] == pytest.approx(2 / 3) and ev["top5"] == pytest.approx(1.0)
    assert ev["per_class"]["espresso"] == {"images": 1, "recall": 1.0}
    assert ev["per_class"]["tabby, tabby cat"]["recall"] == 0.0
    rows, cols = ev["confusion"]["rows"], ev["confusion"]["columns"]
    counts = ev["confusion"]["counts"]
    assert counts[rows.index("tabby, tabby cat")][cols.index("Egyptian_cat")] == 1
    assert cols[-1] == "(other)"


def test_tree_evaluation_text_and_corrupt_file(tree, reference):
    (tree / "espresso" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = run_cli("classify", str(tree), *model_args(reference))
    assert proc.returncode == 1  # something was skipped
    assert "top-1: 66.67 %" in proc.stdout and "top-5: 100.00 %" in proc.stdout
    assert "confusion (rows: truth" in proc.stdout
    skipped = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "broken.jpg: corrupt or truncated JPEG" in skipped[0]


def test_loose_files_and_folders(reference, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    shutil.copy(reference / "samples" / "coffee.png", folder / "a.png")
    (folder / "notes.txt").write_text("not an image, ignored by suffix")
    proc = run_cli(
        "classify", str(folder), str(reference / "samples" / "chelsea.png"), *model_args(reference), "-k", "2"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and "a.png   espresso" in lines[0] and "chelsea.png   Egyptian cat" in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.png"], "no model: pass --bundle DIR, or --model FILE with --labels FILE"),
        (["x.png", "--bundle", "/nonexistent"], "/nonexistent: bundle directory not found"),
        (["x.png", "--model", "/nope.tflite", "--labels", "/nope.txt"], "/nope.tflite: model file not found"),
        (["x.png", "--bundle", "b", "--model", "m"], "give either --bundle or --model/--labels, not both"),
        # bad values: argparse's usage block is gone, the line names the argument
        (["x.png", "--crop-fraction", "0"], "argument --crop-fraction: 0 is not a number above 0"),
        (["x.png", "--crop-fraction", "1.5"], "argument --crop-fraction: 1.5 is not in (0, 1]"),
        (["x.png", "--std", "0"], "argument --std: 0 is not a number above 0"),
        (["x.png", "--threads", "-3"], "argument --threads: -3 is not at least 1"),
        (
            ["x.png", "--bundle", "b", "--mean", "1", "--resize", "stretch"],
            "--mean, --resize: only for a bare --model; a bundle carries its own labels and preprocessing",
        ),
    ],
)
def test_usage_errors_are_one_line(args, message):
    proc = run_cli("classify", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"shelfscan-agent classify: error: {message}"]


def test_folder_without_images_is_reported(reference, tmp_path):
    proc = run_cli("classify", str(tmp_path), *model_args(reference))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"shelfscan-agent classify: skipped: {tmp_path}: a folder without images"
    ]


def test_missing_path_reported(reference):
    proc = run_cli("classify", "/no/such.png", *model_args(reference), "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["results"][0]["error"] == "/no/such.png: no such file or directory"

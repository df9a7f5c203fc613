"""``shelfscan-agent detect``: find boxes in image files, draw them, and score them against box truth.

Truth is the composer's ``shelves.json`` (docs/detector.md): given with ``--truth``, or found
in a folder passed as a path, whose listed images are then the ones detected. Only the
``facings`` boxes are read. With truth, boxes are decoded down to the evaluation floor so AP
sees the whole precision-recall curve; what is printed, drawn and counted is still what
scores at least the operating threshold. Exit status: 0 when every image was processed, 1 when some were
skipped (each named on stderr), 2 for unusable arguments, truth or model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import ImageError, ShelfscanError

if TYPE_CHECKING:
    from edge.detections import Detections
    from edge.detector import Detector

SHELVES_NAME = "shelves.json"
SHELVES_SCHEMA = "shelfscan.shelves"
_HELP = "find product facings (boxes) in images; with box truth, AP and counting error"
_DESCRIPTION = (
    "Detect boxes in images. With truth (--truth, or a folder holding shelves.json) also report AP50, AP50:95 "
    "and the mean absolute count error per image."
)
_PATHS_HELP = (
    "image files or folders (a folder with shelves.json is a composed set: its listed images are detected and scored)"
)


def register(sub: Any, handlers: dict[str, Any]) -> None:
    from edge.cli_args import add_model_command, add_preprocess_args, positive_int

    p = add_model_command(sub, "detect", _HELP, _DESCRIPTION, paths_help=_PATHS_HELP, detector=True)
    dec = p.add_argument_group("decoding (default: the bundle's manifest)")
    dec.add_argument("--score-threshold", type=float, metavar="T", help="drop boxes scoring below T")
    dec.add_argument("--nms-iou", type=float, metavar="IOU", help="centernet: suppress overlaps above this IoU")
    dec.add_argument("--max-detections", type=positive_int, metavar="N", help="at most N boxes per image")
    add_preprocess_args(p, resize_default="stretch")
    p.add_argument("--truth", metavar="FILE", help="shelves.json with the true facing boxes of the images")
    p.add_argument("--draw", metavar="DIR", help="write each image with its boxes (and truth, green) as DIR/NAME.jpg")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    handlers["detect"] = run


def open_detector(args: argparse.Namespace) -> Detector:
    """Build a detector from parsed options, with one-line usage errors."""
    from edge.cli_args import delegate_from_args, preprocess_overrides, reject_bare_options
    from edge.detector import Detector

    delegate = delegate_from_args(args)
    settings = {"score_threshold": args.score_threshold, "nms_iou": args.nms_iou, "max_detections": args.max_detections}
    if args.bundle and args.model:
        raise ShelfscanError("give either --bundle or --model, not both")
    if args.bundle:
        reject_bare_options(args)
        return Detector.from_bundle(args.bundle, args.threads, delegate=delegate, **settings)
    if not args.model:
        raise ShelfscanError("no model: pass --bundle DIR or --model FILE")
    return Detector.from_file(
        args.model, args.threads, labels=args.labels, delegate=delegate, **settings, **preprocess_overrides(args)
    )


@dataclass(frozen=True)
class TruthImage:
    """One image of a ``shelves.json``: where it is, its size, and its facing boxes ``(M, 4)``."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray


def load_shelves(path: Path) -> list[TruthImage]:
    """Read the facing boxes of a composed set; image files are relative to the file's folder."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShelfscanError(f"{path}: cannot read truth ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShelfscanError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SHELVES_SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ShelfscanError(f"{path}: schema is {got!r}, expected {SHELVES_SCHEMA!r}")
    images = []
    for n, entry in enumerate(doc.get("images") or []):
        try:
            boxes = np.array([f["box"] for f in entry.get("facings", [])], np.float32).reshape(-1, 4)
            images.append(TruthImage(path.parent / entry["file"], int(entry["width"]), int(entry["height"]), boxes))
        except (KeyError, TypeError, ValueError) as exc:
            raise ShelfscanError(f"{path}: images[{n}]: bad entry ({type(exc).__name__}: {exc})") from None
    return images


def annotate(frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``frame`` with truth boxes (green, thin) and predicted boxes with their scores (orange)."""
    import cv2

    out: np.ndarray = frame.copy()
    thick = max(1, round(min(frame.shape[:2]) / 300))
    for box in [] if truth is None else truth:
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (0, 200, 0), 1)
    for box, score in zip(boxes, scores, strict=True):
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (0, 140, 255), thick)
        cv2.putText(out, f"{score:.2f}", (x0 + 2, max(y0 + 12, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 140, 255), 1)
    return out


def _collect(args: argparse.Namespace) -> tuple[list[str | Path], dict[Path, TruthImage], list[str]]:
    """Images to detect (in order, once each), truth by resolved path, and the truth files read."""
    from edge.images import list_images

    truth: dict[Path, TruthImage] = {}
    sources: list[str] = []

    def add_truth(file: Path) -> list[TruthImage]:
        entries = load_shelves(file)
        truth.update({t.path.resolve(): t for t in entries})
        sources.append(str(file))
        return entries

    items: list[str | Path] = []
    if args.truth:
        listed = add_truth(Path(args.truth))
        if not args.paths:
            items += [t.path for t in listed]
    for raw in args.paths:
        path = Path(raw)
        if not path.exists():
            items.append(raw)  # reported as an error in order
        elif path.is_dir() and (path / SHELVES_NAME).is_file():
            items += [t.path for t in add_truth(path / SHELVES_NAME)]
        elif path.is_dir():
            items += list_images(path)
        else:
            items.append(path)
    unique = list({str(i): i for i in items}.values())  # first place kept: dicts keep insertion order
    return unique, truth, sources


def _out_name(path: Path, used: set[str]) -> str:
    name, n = f"{path.stem}.jpg", 1
    while name in used:
        n += 1
        name = f"{path.stem}-{n}.jpg"
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    import cv2

    from edge.cli_args import finish_results
    from edge.detection_metrics import EVAL_SCORE_FLOOR, detection_report
    from edge.detector import detection_settings
    from edge.preprocess import read_image
    from edge.progress import Progress

    if not args.paths and not args.truth:
        raise ShelfscanError("nothing to detect: pass image files or folders, or --truth shelves.json")
    items, truth, sources = _collect(args)
    det = open_detector(args)
    draw = Path(args.draw) if args.draw else None
    if draw:
        draw.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {**det.describe(), "results": [], "evaluation": None}
    operating = det.settings.score_threshold
    if truth:  # AP needs the low-scoring boxes too; they are filtered out of everything else
        det.settings = detection_settings(det.settings, score_threshold=min(EVAL_SCORE_FLOOR, operating))
    scored: list[tuple[Detections, np.ndarray]] = []
    used: set[str] = set()
    bar = Progress(len(items), "detect")
    for item in items:
        bar.update()
        path = Path(item)
        known = truth.get(path.resolve())
        try:
            if not path.exists():
                raise ImageError(f"{item}: no such file or directory")
            frame = read_image(path)
            if known and (frame.shape[1], frame.shape[0]) != (known.width, known.height):
                raise ImageError(
                    f"{path}: image is {frame.shape[1]}x{frame.shape[0]}, the truth says {known.width}x{known.height}"
                )
        except ImageError as exc:
            doc["results"].append({"path": str(item), "error": str(exc)})
            continue
        every = det.detect_bgr(frame)
        found = every.above(operating)
        result: dict[str, Any] = {
            "path": str(path),
            "width": frame.shape[1],
            "height": frame.shape[0],
            "count": len(found),
            "detections": found.to_list(det.labels),
        }
        if known:
            result["truth_count"] = len(known.boxes)
            scored.append((every, known.boxes))
        doc["results"].append(result)
        if draw:
            picture = annotate(frame, found.xyxy, found.scores, known.boxes if known else None)
            target = draw / _out_name(path, used)
            if not cv2.imwrite(str(target), picture):
                raise ShelfscanError(f"{target}: cannot write the annotated image")
        if not args.json:
            print(format_result(result, found, det))
    bar.close()
    if scored:
        report = detection_report([p for p, _ in scored], [t for _, t in scored], operating)
        doc["evaluation"] = {"truth": sources, **report}
        if not args.json:
            print(format_report(report, sources))
    elif truth and not args.json:
        print("no image with truth was detected: nothing to score")
    return finish_results(doc, "detect", args.json)


def format_result(result: dict[str, Any], found: Detections, det: Detector) -> str:
    """One image: a header line, then one row per box."""
    truth = f" (truth {result['truth_count']})" if "truth_count" in result else ""
    noun = "box" if result["count"] == 1 else "boxes"
    lines = [f"{result['path']}: {result['count']} {noun}{truth}"]
    if len(found):
        lines.append(f"  {'x0':>7} {'y0':>7} {'x1':>7} {'y1':>7}  {'score':>5}  label")
    ids = found.class_id if found.class_id is not None else [None] * len(found)
    for box, score, cid in zip(found.xyxy, found.scores, ids, strict=True):
        coords = " ".join(f"{v:7.1f}" for v in box)
        lines.append(f"  {coords}  {score:5.3f}  {det.label(None if cid is None else int(cid))}")
    return "\n".join(lines)


def format_report(report: dict[str, Any], sources: list[str]) -> str:
    """The scores against truth (a :func:`edge.detection_metrics.detection_report`), in two lines."""

    def fig(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"\n== {report['images']} images against {', '.join(sources)}: {report['truth_boxes']} true boxes, "
        f"{report['predicted_boxes']} found at score >= {report['score_threshold']:g}\n"
        f"AP50 {fig(report['ap50'])}   AP50:95 {fig(report['ap50_95'])}   "
        f"count error {fig(report['count_mae'])} per image (mean absolute)"
    )

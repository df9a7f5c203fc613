"""``shelfscan-agent shelfmap``: draw a scan's shelf map (from the broker or a saved JSON) for people.

The agent publishes the map as data (retained ``<prefix>/<device>/shelfmap``); a store manager
wants a picture: one band per shelf row, each facing a box along the shelf labelled with its
product, each out-of-stock gap a red box. PNG through OpenCV, or a self-contained HTML page
with an inline SVG (zoomable, the label on hover).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli_args import add_broker_args, broker_from_args
from edge.errors import ShelfscanError

if TYPE_CHECKING:
    from edge.watch import BrokerURL

ROW_HEIGHT = 90
MARGIN = 20


def register(sub: Any, handlers: dict[str, Any]) -> None:
    p = sub.add_parser(
        "shelfmap",
        help="draw a scan's shelf map (facings and gaps per row) as PNG or HTML",
        description="Render a device's retained shelf map, or a saved one, as a picture.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", metavar="SHELFMAP.json", help="a saved shelfmap message")
    src.add_argument("--device", metavar="ID", help="read <prefix>/<ID>/shelfmap (retained) from --broker")
    add_broker_args(p)
    p.add_argument("--prefix", default="shelfscan", help="topic prefix (default shelfscan)")
    p.add_argument("--out", required=True, metavar="FILE", help="map.png or map.html")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    handlers["shelfmap"] = run


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".html"):
        raise ShelfscanError(f"--out {out}: write a .png or an .html file")
    doc = fetch(broker_from_args(args), args.prefix, args.device) if args.device else read(Path(args.file))
    layout = lay_out(doc)
    if out.suffix.lower() == ".png":
        write_png(layout, out)
    else:
        out.write_text(to_html(layout, doc), encoding="utf-8")
    summary = {
        "out": str(out),
        "rows": len(layout["rows"]),
        "facings": doc.get("facings"),
        "gaps": doc.get("gaps"),
        "scan_id": doc.get("scan_id"),
    }
    print(
        json.dumps(summary)
        if args.json
        else f"{out}: {summary['rows']} rows, {summary['facings']} facings, {summary['gaps']} gaps"
    )
    return 0


def read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShelfscanError(f"{path}: cannot read a shelf map ({exc})") from None
    return check(doc, str(path))


def check(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ShelfscanError(f"{where}: not a shelfmap message (no rows)")
    return doc


def fetch(url: BrokerURL, prefix: str, device: str, timeout: float = 5.0) -> dict[str, Any]:
    """The retained shelf map of ``device``, waiting up to ``timeout`` seconds for it."""
    from edge.watch import connect

    topic = f"{prefix}/{device}/shelfmap"
    got: dict[str, Any] = {}

    def on_message(topic_: str, payload: bytes) -> None:
        got["payload"] = payload

    client = connect(url, f"shelfscan-shelfmap-{device}", [topic], on_message)
    try:
        deadline = time.monotonic() + timeout
        while "payload" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    if "payload" not in got:
        raise ShelfscanError(f"{url}: no retained shelf map on {topic} within {timeout:.0f} s")
    try:
        return check(json.loads(got["payload"]), topic)
    except ValueError:
        raise ShelfscanError(f"{topic}: not JSON") from None


def colour(label: str) -> tuple[int, int, int]:
    """A stable, light colour per label (BGR), so one product looks the same in every map."""
    h = hashlib.sha256(label.encode()).digest()
    return 110 + h[0] % 130, 110 + h[1] % 130, 110 + h[2] % 130


def lay_out(doc: dict[str, Any], width: int = 1600) -> dict[str, Any]:
    """Shelf x positions scaled to ``width`` pixels; one band per row, top to bottom."""
    items = [it for row in doc["rows"] for it in row.get("items", [])]
    if items:
        lo, hi = min(it["x0"] for it in items), max(it["x1"] for it in items)
    else:
        lo, hi = 0.0, 1.0
    scale = (width - 2 * MARGIN) / max(hi - lo, 1.0)
    rows = []
    for r, row in enumerate(doc["rows"]):
        y = MARGIN + r * (ROW_HEIGHT + MARGIN)
        boxes = []
        for it in row.get("items", []):
            x0, x1 = MARGIN + (it["x0"] - lo) * scale, MARGIN + (it["x1"] - lo) * scale
            text = it.get("label", "gap") if it["type"] == "facing" else "gap"
            metres = f" {it['x0_m']:.2f}-{it['x1_m']:.2f} m" if "x0_m" in it else ""
            boxes.append(
                {
                    "type": it["type"],
                    "x0": x0,
                    "x1": max(x1, x0 + 2),
                    "y0": y,
                    "y1": y + ROW_HEIGHT,
                    "text": text,
                    "title": f"{text}{metres}",
                }
            )
        rows.append({"row": row.get("row", r), "y": y, "boxes": boxes})
    height = MARGIN + len(rows) * (ROW_HEIGHT + MARGIN)
    return {"width": width, "height": max(height, 2 * MARGIN), "rows": rows}


def write_png(layout: dict[str, Any], out: Path) -> None:
    import cv2
    import numpy as np

    img = np.full((layout["height"], layout["width"], 3), 245, np.uint8)
    for row in layout["rows"]:
        y = row["y"]
        cv2.line(img, (0, y + ROW_HEIGHT + 2), (layout["width"], y + ROW_HEIGHT + 2), (90, 90, 90), 2)
        cv2.putText(img, f"row {row['row']}", (2, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1)
        for b in row["boxes"]:
            p0, p1 = (int(b["x0"]), int(b["y0"]) + 14), (int(b["x1"]) - 1, int(b["y1"]))
            if b["type"] == "gap":
                cv2.rectangle(img, p0, p1, (40, 40, 220), 2)
                cv2.line(img, p0, p1, (40, 40, 220), 1)
            else:
                cv2.rectangle(img, p0, p1, colour(b["text"]), -1)
                cv2.rectangle(img, p0, p1, (60, 60, 60), 1)
            text = b["text"][: max(1, int((b["x1"] - b["x0"]) / 7))]
            cv2.putText(img, text, (p0[0] + 2, p1[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (20, 20, 20), 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img):
        raise ShelfscanError(f"{out}: cannot write the PNG")


def to_html(layout: dict[str, Any], doc: dict[str, Any]) -> str:
    e = html.escape
    shapes = []
    for row in layout["rows"]:
        shapes.append(f'<text x="2" y="{row["y"] + 12}" font-size="11">row {row["row"]}</text>')
        for b in row["boxes"]:
            w, y = b["x1"] - b["x0"], b["y0"] + 14
            fill = "none" if b["type"] == "gap" else "rgb({2},{1},{0})".format(*colour(b["text"]))
            stroke = "#d22" if b["type"] == "gap" else "#444"
            shapes.append(
                f'<g><title>{e(b["title"])}</title><rect x="{b["x0"]:.1f}" y="{y}" width="{w:.1f}" '
                f'height="{ROW_HEIGHT - 14}" fill="{fill}" stroke="{stroke}"/>'
                f'<text x="{b["x0"] + 2:.1f}" y="{b["y1"] - 6}" font-size="10">'
                f"{e(b['text'][:20])}</text></g>"
            )
    counts = ", ".join(f"{e(k)} {v}" for k, v in (doc.get("counts") or {}).items())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>shelf map {e(str(doc.get('scan_id', '')))}"
        f"</title></head><body style='font-family:sans-serif'><h1>Shelf map {e(str(doc.get('scan_id', '')))}</h1>"
        f"<p>{doc.get('facings')} facings, {doc.get('gaps')} gaps, {doc.get('unknown')} unknown. {counts}</p>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{layout['width']}' height='{layout['height']}'>"
        + "".join(shapes)
        + "</svg></body></html>\n"
    )

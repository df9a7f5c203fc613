"""How the demo judges the agent: facings per label and gaps against the shelf pass's truth.

The bar is the acceptance of the facing-count issue: the per-label absolute count errors add up
to at most 5 % of the true facings, and at least 90 % of the true gaps are found with at most one
false gap. Counts come from :func:`trainer.shelf_video.compare_counts`; a gap is *found* when its
place on the shelf matches a true gap, not merely because the totals agree: each reported gap
lies between two counted facings, whose frame boxes map back onto the shelf canvas through the
camera path of the frame they counted in (:func:`trainer.shelf_video.to_canvas`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from trainer.shelf_video import UNKNOWN, compare_counts, to_canvas

MAX_COUNT_ERROR = 0.05  # summed per-label absolute errors / true facings
MIN_GAPS_FOUND = 0.9  # share of the true gaps
MAX_FALSE_GAPS = 1
GAP_OVERLAP = 0.3  # a reported span must cover this share of a true gap's width


def match_gaps(truth: dict[str, Any], gaps: list[dict[str, Any]], facings: list[dict[str, Any]]) -> dict[str, Any]:
    """Reported gaps placed on the shelf between their two neighbours and matched to the true gaps.

    A reported gap is false when its neighbours are unknown, it matches no true gap, or it
    matches one already found (reported twice).
    """
    placed = {f["track_id"]: to_canvas(truth, f.get("box_frame_index", f["frame_index"]), f["box"]) for f in facings}
    true = [g["box"] for row in truth["rows"] for g in row["gaps"]]
    found: set[int] = set()
    false = 0
    for g in gaps:
        left, right = placed.get(g.get("left_track")), placed.get(g.get("right_track"))
        if left is None or right is None:
            false += 1
            continue
        x0, x1 = left[2], right[0]
        y = (left[1] + left[3] + right[1] + right[3]) / 4
        hits = [
            k
            for k, (a, top, b, floor) in enumerate(true)
            if top <= y <= floor and min(b, x1) - max(a, x0) > GAP_OVERLAP * (b - a)
        ]
        new = [k for k in hits if k not in found]
        if new:
            found.add(new[0])
        else:
            false += 1
    return {
        "truth": len(true),
        "reported": len(gaps),
        "found": len(found),
        "false": false,
        "found_share": len(found) / len(true) if true else 1.0,
    }


def score(
    truth: dict[str, Any],
    counts: dict[str, int],
    facings: list[dict[str, Any]],
    gaps: list[dict[str, Any]],
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counts and gaps against the truth (and ``evidence``: ``check_evidence``'s verdict), what falls short of
    the bar (``problems``) and ``ok``."""
    result = {"counts": compare_counts(truth, counts, len(gaps)), "gaps": match_gaps(truth, gaps, facings)}
    if evidence is not None:
        result["evidence"] = evidence
    result["problems"] = problems(result)
    result["ok"] = not result["problems"]
    return result


def check_evidence(facings: list[dict[str, Any]], evidence: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Every ``unknown`` facing has an ``evidence`` message (same scan and track) whose files are on disk with the
    size and sha256 it names: an auditor can see what could not be labelled."""
    by_track = {(e.get("scan_id"), e.get("track_id")): e for e in evidence}
    unknown = [f for f in facings if f.get("label") == UNKNOWN]
    missing = []
    for f in unknown:
        e = by_track.get((f.get("scan_id"), f.get("track_id")))
        if e is None or not e.get("files") or not all(_on_disk(folder / x["name"], x["sha256"]) for x in e["files"]):
            missing.append(int(f.get("track_id", -1)))
    return {"unknown_facings": len(unknown), "with_evidence": len(unknown) - len(missing), "missing_tracks": missing}


def _on_disk(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def problems(result: dict[str, Any]) -> list[str]:
    """One sentence per missed target; empty when the agent met the bar."""
    c, g = result["counts"], result["gaps"]
    out = []
    if c["error_share"] > MAX_COUNT_ERROR:
        off = ", ".join(f"{k} {v['counted']} of {v['truth']}" for k, v in c["per_label"].items() if v["error"])
        out.append(
            f"count errors {c['abs_error']} = {100 * c['error_share']:.1f} % of the true facings "
            f"(at most {100 * MAX_COUNT_ERROR:.0f} %): {off}"
        )
    if g["found_share"] < MIN_GAPS_FOUND:
        out.append(f"{g['found']} of {g['truth']} gaps found (at least {100 * MIN_GAPS_FOUND:.0f} %)")
    if g["false"] > MAX_FALSE_GAPS:
        out.append(f"{g['false']} false gaps (at most {MAX_FALSE_GAPS})")
    ev = result.get("evidence")
    if ev and ev["missing_tracks"]:
        out.append(
            f"{len(ev['missing_tracks'])} of {ev['unknown_facings']} unknown facings have no evidence image "
            f"(tracks {ev['missing_tracks'][:10]})"
        )
    return out


def table(result: dict[str, Any]) -> str:
    """Facings per label (truth, counted, ok or the difference), unknown, totals, gaps, and the verdicts."""
    c, g = result["counts"], result["gaps"]
    names = list(c["per_label"])
    width = max([len(n) for n in [*names, UNKNOWN]] + [5])
    lines = [f"  {'label':<{width}}  truth  counted", f"  {'-' * width}  -----  -------"]
    for name, v in c["per_label"].items():
        diff = v["counted"] - v["truth"]
        lines.append(f"  {name:<{width}}  {v['truth']:>5}  {v['counted']:>7}  {'ok' if not diff else f'{diff:+d}'}")
    if c["facings"]["unknown"]:
        lines.append(
            f"  {UNKNOWN:<{width}}  {'':>5}  {c['facings']['unknown']:>7}  (no clear label: not counted as a product)"
        )
    total = c["facings"]["counted"] + c["facings"]["unknown"]
    lines.append(f"  {'total':<{width}}  {c['facings']['truth']:>5}  {total:>7}")
    verdict = "ok" if c["error_share"] <= MAX_COUNT_ERROR else "TOO MANY"
    lines.append(
        f"  count errors: {c['abs_error']} = {100 * c['error_share']:.1f} % of the true facings "
        f"(at most {100 * MAX_COUNT_ERROR:.0f} %): {verdict}"
    )
    gaps_ok = g["found_share"] >= MIN_GAPS_FOUND and g["false"] <= MAX_FALSE_GAPS
    lines.append(
        f"  gaps: truth {g['truth']}, reported {g['reported']}, found {g['found']} = "
        f"{100 * g['found_share']:.0f} % (at least {100 * MIN_GAPS_FOUND:.0f} %), false {g['false']} "
        f"(at most {MAX_FALSE_GAPS}): {'ok' if gaps_ok else 'OFF'}"
    )
    ev = result.get("evidence")
    if ev:
        lines.append(
            f"  evidence: {ev['with_evidence']} of {ev['unknown_facings']} unknown facings have their crop "
            f"and frame on the robot: {'ok' if not ev['missing_tracks'] else 'MISSING'}"
        )
    return "\n".join(lines)

"""Write a benchmark's JSON and markdown into docs/benchmarks/, with machine, command and date."""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.bench import summarize
from edge.sysinfo import machine_info

OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


def stats_ms(samples: list[float]) -> dict[str, float]:
    """Summary of durations given in seconds, reported in milliseconds: the agent bench's own summary."""
    return summarize(samples)


def alternating_invoke_ms(
    opener: Callable[[Path, int], Any],
    bundles: dict[str, Path],
    threads: int,
    frame_hw: tuple[int, int],
    runs: int,
    digits: int,
    rounds: int = 5,
) -> dict[str, float]:
    """Median ``invoke()`` time (ms) per bundle, opened by ``opener`` (a classifier's or a detector's
    ``from_bundle``), the bundles taking turns so that machine drift hits all alike: the converter and the
    detector benches compare their variants this way."""
    import numpy as np

    models = {name: opener(path, threads) for name, path in bundles.items()}
    for model in models.values():
        model.preprocessor.from_bgr(np.full((*frame_hw, 3), 128, np.uint8))
        model.run_model()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                model.interpreter.invoke()
                times[name].append(time.perf_counter() - t0)
    return {name: round(1e3 * statistics.median(ts), digits) for name, ts in times.items()}


def write_report(name: str, title: str, results: dict[str, Any], markdown_body: str) -> Path:
    machine = machine_info()
    module = (
        Path(sys.argv[0])
        .with_suffix("")
        .relative_to(Path(__file__).resolve().parent.parent)
        .as_posix()
        .replace("/", ".")
    )
    command = " ".join(shlex.quote(a) for a in ["python", "-m", module, *sys.argv[1:]])
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "date": machine["date"], "command": command, "machine": machine, "results": results}
    (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    machine_line = (
        f"{machine.get('cpu')} ({machine.get('cores_available')} cores available; CPU features: "
        f"{machine.get('cpu_features')}), "
        f"{machine.get('memory_gib')} GiB, {machine.get('os')}, Python {machine.get('python')}"
    )
    header = f"# {title}\n\n- date: {machine['date']}\n- machine: {machine_line}\n- command: `{command}`\n"
    md = f"{header}\n{markdown_body}\n"
    path = OUT / f"{name}.md"
    path.write_text(md)
    return path

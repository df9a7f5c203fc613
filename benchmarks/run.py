"""`make bench`: every benchmark, each writing docs/benchmarks/<name>.json and .md."""

from __future__ import annotations

import runpy
import sys

# Order matters: converter_bench converts the fine-tuned model that trainer_bench leaves in runs/.
BENCHMARKS = [
    "benchmarks.runtime_overhead",
    "benchmarks.trainer_bench",
    "benchmarks.converter_bench",
    "benchmarks.grocery_bench",
    "benchmarks.agent_bench",
    "benchmarks.detector_bench",
    "benchmarks.facing_bench",  # needs the detector that detector_bench leaves in runs/
    "benchmarks.evidence_soak",
]

if __name__ == "__main__":
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        sys.argv = [module]
        runpy.run_module(module, run_name="__main__")

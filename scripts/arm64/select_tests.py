"""pytest plugin for the emulated aarch64 run (``-p select_tests``): drop the tests a device cannot run.

The files to run are listed in ``check.py`` (modules that import edge, numpy, OpenCV and the TF-free
test helpers only). Within them, a test is deselected here, with its reason printed, when it

* needs a model that the session builds with TensorFlow (the ``tiny_*`` and ``detectors`` fixtures)
  and no prebuilt copy is given (``SHELFSCAN_PREBUILT``, tests/prebuilt.py: check.py builds them on
  the host first): there is no TensorFlow for the device, by design;
* compiles an x86 shared library with the host compiler and loads it (the no-op delegate), or runs a
  host console script or TensorFlow in a subprocess (listed in HOST_ONLY).

Everything else runs, including tests that start the agent or Mosquitto in subprocesses: the
emulated interpreter is usable as ``sys.executable`` and x86 programs (mosquitto) run natively.
"""

from __future__ import annotations

import os

import pytest

NEEDS_TF = {"tiny_models", "tiny_detector", "detectors"}  # item.fixturenames is the closure
NEEDS_HOST_CC = {"noop_delegate"}
# Slow under emulation and covered by a sibling case; run with ARM64_TESTS=all.
QUICK_SKIP = {
    "test_real_pixels_motion_and_counting_agree[3]": "a second seed of a 30 s emulated test (seed 0 runs)",
    "test_rollout_from_an_https_url": "starts the agent in a subprocess (ARM64_TESTS=all runs it)",
    "test_without_trusted_keys_rollouts_are_ignored": "starts the agent in a subprocess (ARM64_TESTS=all runs it)",
}
HOST_ONLY = {
    "test_rollout_to_two_agents_refusals_canary_rollback_and_an_offline_robot": "builds a model with TensorFlow",
    "test_a_slow_model_is_rolled_back_by_its_frame_rate": "builds a model with TensorFlow",
    "test_console_script_help_without_tensorflow": "runs the host venv's console script",
    "test_runtime_falls_back_to_tf_lite_when_litert_missing": "needs TensorFlow (tf.lite fallback)",
}


def reason(item: pytest.Item) -> str | None:
    names = set(getattr(item, "fixturenames", ()))
    if names & NEEDS_TF and not os.environ.get("SHELFSCAN_PREBUILT"):  # check.py prebuilds them on the host
        return f"needs TensorFlow-built models ({', '.join(sorted(names & NEEDS_TF))})"
    if names & NEEDS_HOST_CC:
        return "loads a library compiled by the host's x86 compiler"
    if os.environ.get("ARM64_TESTS") != "all" and item.name in QUICK_SKIP:
        return QUICK_SKIP[item.name]
    return HOST_ONLY.get(item.name.split("[")[0])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        why = reason(item)
        (drop if why else keep).append((item, why))
    if drop:
        config.hook.pytest_deselected(items=[i for i, _ in drop])
        items[:] = [i for i, _ in keep]
    report = os.environ.get("ARM64_DESELECTED")
    if report:
        with open(report, "w") as f:
            f.writelines(f"{item.nodeid}\t{why}\n" for item, why in drop)

"""The checks of ``make check-arm64``, driven from the x86 venv (scripts/check-arm64.sh sets it up).

Each step runs the agent's own code in the emulated aarch64 interpreter (``$ARM64_PYTHON``: Debian's
arm64 python3.11 under qemu-aarch64-static as a Cortex-A72 with a Raspberry Pi 4's /proc/cpuinfo)
and, where there is something to compare, the same code in the x86 venv on the same inputs:

  preprocess  edge.preprocess on real photos in every configuration: bit for bit (see EXACT below)
  classify    shelfscan-agent classify --json, both reference models, both photos: same top-5 labels,
              scores within compare.SCORE_TOLERANCE
  tests       the edge unit tests a device can run (TEST_FILES; select_tests.py drops the rest)
  bench       shelfscan-agent bench on a bundle of the reference model (smoke: a sane report)
  run         shelfscan-agent run: a short video through Mosquitto on loopback, the counts checked

    check.py [STEP...]          (default: all; ARM64_ONLY=a,b does the same)
    ARM64_PERTURB=classify|preprocess   alter one aarch64 value before comparing: the step must fail
    ARM64_STRICT=1              OpenCV's area must be bit-exact too (it is not: docs/arm64.md)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "build" / "arm64"
ARM = os.environ.get("ARM64_PYTHON", str(OUT / "bin" / "python3.11"))
X86 = sys.executable
sys.path[:0] = [str(REPO), str(HERE)]

import compare  # noqa: E402

SHARED = Path(os.environ.get("SHELFSCAN_SHARED", REPO.parent / "shared")).resolve()
REF = SHARED / "models" / "tflite_reference"
MODELS = ["tf2_mobilenet_v2_1.0_224_ptq", "mobilenet_v2_1.0_224_quant"]
PHOTOS = [REF / "samples" / "chelsea.png", REF / "samples" / "coffee.png"]
# A few real JPEGs besides the two PNGs (decoding is compared too); absent ones are skipped.
EXTRA_PHOTOS = [
    SHARED / "datasets" / "grocery_store" / "train" / "kiwi" / "train_Kiwi_001.jpg",
    SHARED / "datasets" / "freiburg_groceries" / "train" / "beans" / "BEANS0000.jpg",
]
# Interpolations done by OpenCV code that is not bit-exact across ISAs (its SIMD INTER_AREA rounds
# differently on NEON and AVX2): allowed to differ by at most one level, reported. Everything else
# (decoding, bilinear_antialias, bilinear = INTER_LINEAR_EXACT, nearest, normalization) is exact.
OPENCV_INEXACT = (":area:",)

# Test modules whose imports are edge, numpy/OpenCV/Pillow and TF-free helpers (trainer.shelf_composer
# and the photo_library, composer_camera and shelf_types it uses are numpy/OpenCV only), chosen to fit
# CI's time: ~170 tests in about 3 minutes under emulation (with the prebuilt tiny models).
# Left out everywhere: test_converter, test_trainer, test_detector_training, test_demo, test_bench,
# test_agent_facings, test_shelf_video (TensorFlow or trainer side), test_deploy (systemd-analyze and the
# host venv), test_tls_acl (openssl CA and TLS broker: host tooling).
TEST_FILES = [
    "test_adapters.py",
    "test_bundle.py",
    "test_detector.py",
    "test_facing_counter.py",
    "test_facing_pipeline.py",
    "test_motion.py",
    "test_outbox.py",
    "test_picamera2.py",
    "test_preprocess.py",
    "test_shelfmap_cli.py",
    "test_docs.py",
    "test_evidence.py",
    "test_capture_stall.py",
    "test_logsetup.py",
    "test_config_example.py",
    "test_rollout.py",
]
# ARM64_TESTS=all adds the tests that start the agent CLI in subprocesses (each emulated start-up and model
# load costs seconds; classify and run are compared / smoke-run by the steps above anyway). Note: test_agent's
# broker-outage tests wait on wall-clock deadlines sized for native speed and time out under QEMU.
MORE_TEST_FILES = [
    "test_classify_cli.py",
    "test_reference_models.py",
    "test_delegates.py",
    "test_no_tensorflow.py",
    "test_fleet.py",
    "test_agent.py",
]


def env_for(python: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    env.pop("SHELFSCAN_RUNTIME", None)
    return env


def run(python: str, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, *args],
        cwd=REPO,
        env=kw.pop("env", env_for(python)),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise AssertionError(f"{what} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc.stdout


def perturb(step: str) -> bool:
    return os.environ.get("ARM64_PERTURB", "") == step


# -- steps ------------------------------------------------------------------------------------------
def step_preprocess(work: Path) -> list[str]:
    import numpy as np

    photos = [str(p) for p in [*PHOTOS, *EXTRA_PHOTOS] if p.exists()]
    script = str(HERE / "dump_preprocess.py")
    print(must(run(X86, script, str(work / "x86.npz"), *photos), "x86 dump").strip())
    print(must(run(ARM, script, str(work / "arm.npz"), *photos), "aarch64 dump").strip())
    x86, arm = dict(np.load(work / "x86.npz")), dict(np.load(work / "arm.npz"))
    if perturb("preprocess"):
        key = next(k for k in arm if ":bilinear_antialias:" in k)
        arm[key] = arm[key].copy()
        arm[key].flat[0] ^= 1
    problems = compare.compare_arrays(x86, arm)
    strict = os.environ.get("ARM64_STRICT") == "1"
    inexact = [p for p in problems if any(m in p for m in OPENCV_INEXACT) and p.endswith("(max |diff| 1)")]
    if inexact and not strict:
        problems = [p for p in problems if p not in inexact]
        print(
            f"note: {len(inexact)} of {len(x86)} arrays differ by one level, all OpenCV area "
            f"(not bit-exact across ISAs; ARM64_STRICT=1 fails on them), e.g. {inexact[0]}"
        )
    print(f"{len(x86) - len(inexact)} of {len(x86)} arrays bit-identical on x86 and aarch64")
    return problems


def step_classify(work: Path) -> list[str]:
    problems: list[str] = []
    for model in MODELS:
        args = [
            "-m",
            "edge.cli",
            "classify",
            *map(str, PHOTOS),
            "--model",
            str(REF / f"{model}.tflite"),
            "--labels",
            str(REF / "imagenet_labels.txt"),
            "--top-k",
            "5",
            "--json",
        ]
        x86 = json.loads(must(run(X86, *args), f"x86 classify {model}"))
        arm = json.loads(must(run(ARM, *args), f"aarch64 classify {model}"))
        (work / f"{model}.x86.json").write_text(json.dumps(x86, indent=1))
        (work / f"{model}.arm64.json").write_text(json.dumps(arm, indent=1))
        if arm["input"]["resize"] != "c-neon":
            problems.append(f"{model}: aarch64 resized with {arm['input']['resize']!r}, not the NEON C resampler")
        if perturb("classify"):
            arm["results"][0]["top_k"][0]["score"] += 2 * compare.SCORE_TOLERANCE
        found = compare.compare_classify(x86, arm)
        problems += [f"{model}: {p}" for p in found]
        for r in arm["results"]:
            top = ", ".join(f"{p['label'].split(',')[0]} {p['score']:.3f}" for p in r["top_k"])
            print(f"{model} {Path(r['path']).name}: {top}")
        print(
            f"{model}: max |score diff| x86 vs aarch64 {compare.max_score_diff(x86, arm):.6f} "
            f"(tolerance {compare.SCORE_TOLERANCE:.6f}); xnnpack {arm['delegate']}"
        )
    return problems


def step_tests(work: Path) -> list[str]:
    deselected = work / "deselected.txt"
    everything = os.environ.get("ARM64_TESTS") == "all"
    files = TEST_FILES + (MORE_TEST_FILES if everything else [])
    # The tiny TFLite models take TensorFlow to build: built here on the host, loaded by the emulated
    # session's fixtures (tests/prebuilt.py), so the detect_classify tests run on aarch64 too.
    prebuilt = work / "prebuilt"
    shutil.rmtree(prebuilt, ignore_errors=True)
    t0 = time.monotonic()
    built = subprocess.run(
        [sys.executable, "-m", "tests.prebuilt", str(prebuilt), str(SHARED)],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        return [f"prebuilding the tiny models on the host failed:\n{built.stderr[-3000:]}"]
    print(f"tiny models prebuilt on the host in {time.monotonic() - t0:.0f} s")
    env = {
        **env_for(ARM),
        "SHELFSCAN_PREBUILT": str(prebuilt),
        "ARM64_DESELECTED": str(deselected),
        "CI": os.environ.get("CI", "1"),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(OUT / "hypothesis"),
        "ARM64_TESTS": "all" if everything else "",
    }
    args = [
        "-m",
        "pytest",
        "-p",
        "select_tests",
        "-p",
        "no:cacheprovider",
        "-q",
        "--timeout",
        "300",
        "--durations",
        "5",
        *[f"tests/{f}" for f in files],
    ]
    # Its own session: agents or brokers a failing test leaves behind are killed with it.
    proc = subprocess.Popen(
        [ARM, *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=1500)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    summary = [line for line in out.splitlines() if line.strip()]
    print("\n".join(summary[-8:]))
    print(
        f"deselected (not runnable on a device, or slow): {len(deselected.read_text().splitlines())}, "
        f"listed in {deselected.relative_to(REPO)}"
    )
    return [] if proc.returncode == 0 else [f"pytest under emulation exited {proc.returncode}:\n{out[-4000:]}"]


def reference_bundle(work: Path) -> Path:
    """The TF1 quantized reference model as a bundle (written by the x86 side, as a converter would)."""
    out = work / "bundles" / "ref-int8"
    code = (
        "import sys; from pathlib import Path\n"
        "from edge.bundle import write_bundle\nfrom edge.labels import read_labels\n"
        "from edge.preprocess import PreprocessSpec\n"
        "ref = Path(sys.argv[2])\n"
        "write_bundle(sys.argv[1], ref / 'mobilenet_v2_1.0_224_quant.tflite', read_labels(ref / 'imagenet_labels.txt'),"
        " PreprocessSpec(height=224, width=224), name='ref', version='1', backbone='mobilenet_v2', variant='int8')\n"
    )
    if not out.exists():
        must(run(X86, "-c", code, str(out), str(REF)), "writing the reference bundle")
    return out


def step_bench(work: Path) -> list[str]:
    bundle = reference_bundle(work)
    eval_dir = work / "eval"
    shutil.rmtree(eval_dir, ignore_errors=True)
    for label, photo in (("tiger cat", PHOTOS[0]), ("espresso", PHOTOS[1])):  # this model's top-1 answers
        (eval_dir / label).mkdir(parents=True, exist_ok=True)
        (eval_dir / label / photo.name).write_bytes(photo.read_bytes())
    proc = run(
        ARM,
        "-m",
        "edge.cli",
        "bench",
        str(bundle),
        "--threads",
        "1,2",
        "--runs",
        "4",
        "--warmup",
        "1",
        "--eval",
        str(eval_dir),
        "--json",
    )
    doc = json.loads(must(proc, "aarch64 bench"))
    problems: list[str] = []
    rows = doc.get("results", [])
    if sorted(r.get("threads") for r in rows) != [1, 2]:
        problems.append(f"bench: expected rows for 1 and 2 threads, got {[r.get('threads') for r in rows]}")
    for r in rows:
        p50 = r.get("stages", {}).get("total", {}).get("p50")
        print(
            f"bench {r.get('variant')} threads={r.get('threads')}: frame p50 {p50} ms (emulated), "
            f"{r.get('fps')} fps, resize {r.get('resize')}, top-1 {r.get('top1')}"
        )
        if not (isinstance(p50, (int, float)) and p50 > 0) or r.get("top1") != 1.0:
            problems.append(f"bench: threads={r.get('threads')}: frame p50 {p50!r}, top-1 {r.get('top1')!r} (want 1.0)")
    if {r.get("resize") for r in rows} != {"c-neon"}:
        problems.append(f"bench: resize kernels {sorted({str(r.get('resize')) for r in rows})}, want c-neon")
    if "aarch64" not in json.dumps(doc.get("machine")):
        problems.append(f"bench: the machine in the report is not aarch64: {doc.get('machine')}")
    return problems


def step_run(work: Path) -> list[str]:
    """The agent end to end, as tests/test_agent.py's first test does it: a video, a broker, the counts."""
    from tests.broker import Broker
    from tests.mqtt_helpers import Subscriber, agent_config, write_shelf_video

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    bundle = work / "bundles" / "imagenet-ptq"
    if not bundle.exists():
        code = (
            "import sys; from pathlib import Path\nfrom edge.bundle import write_bundle\n"
            "from edge.labels import read_labels\nfrom edge.preprocess import PreprocessSpec\nref = Path(sys.argv[2])\n"
            "write_bundle(sys.argv[1], ref / 'tf2_mobilenet_v2_1.0_224_ptq.tflite',"
            " read_labels(ref / 'imagenet_labels.txt'),"
            " PreprocessSpec(height=224, width=224, mean=(127.0,) * 3, std=(127.5,) * 3), name='imagenet-ref',"
            " version='1', backbone='mobilenet_v2', variant='int8')\n"
        )
        must(run(X86, "-c", code, str(bundle), str(REF)), "writing the run bundle")
    video = run_dir / "shelf.avi"
    write_shelf_video(video, PHOTOS, [0, 1, 0, 1], frames_per_run=6)  # min_frames 4
    broker = Broker(run_dir / "broker").start()
    try:
        sub = Subscriber(broker.port, "test/robot-1/#", persistent=False)
        cfg = agent_config(run_dir, broker.port, bundle, f'kind = "video"\npath = "{video}"')
        log = run_dir / "agent.log"
        with open(log, "wb") as f:
            agent = subprocess.Popen(
                [ARM, "-m", "edge.cli", "-v", "run", "--config", str(cfg)],
                cwd=REPO,
                env=env_for(ARM),
                stdout=f,
                stderr=subprocess.STDOUT,
            )
            try:
                rc = agent.wait(300)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
                raise
        problems = [] if rc == 0 else [f"agent exited {rc}: {log.read_text()[-2000:]}"]
        sub.wait_for(lambda s: any(d.get("final") for d in s.of("counts")), 15)
        finals = [d for d in sub.of("counts") if d.get("final")]
        labels = [s["label"] for s in sub.of("sighting")]
        print(f"run: agent exit {rc}, sightings {labels}, final counts {finals[-1]['counts'] if finals else None}")
        if not finals or finals[-1]["counts"] != {"Egyptian cat": 2, "espresso": 2}:
            problems.append(
                f"run: final counts {finals[-1]['counts'] if finals else 'missing'}, "
                "expected {'Egyptian cat': 2, 'espresso': 2}"
            )
        if labels != ["Egyptian cat", "espresso", "Egyptian cat", "espresso"]:
            problems.append(f"run: sightings {labels}")
        sub.close()
    finally:
        broker.stop()
    return problems


STEPS = {
    "preprocess": step_preprocess,
    "classify": step_classify,
    "tests": step_tests,
    "bench": step_bench,
    "run": step_run,
}


def main(argv: list[str]) -> int:
    wanted = argv or [s for s in os.environ.get("ARM64_ONLY", "").split(",") if s] or list(STEPS)
    unknown = set(wanted) - set(STEPS)
    if unknown:
        print(f"check-arm64: unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}", file=sys.stderr)
        return 2
    if not (REF / "imagenet_labels.txt").exists():
        print(f"check-arm64: reference models not found in {REF} (set SHELFSCAN_SHARED)", file=sys.stderr)
        return 2
    work = OUT / "work"
    work.mkdir(parents=True, exist_ok=True)
    failed: dict[str, list[str]] = {}
    times: dict[str, float] = {}
    for name in wanted:
        print(f"\n== check-arm64: {name}", flush=True)
        t0 = time.monotonic()
        try:
            problems = STEPS[name](work)
        except (AssertionError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        times[name] = time.monotonic() - t0
        for p in problems:
            print(f"FAIL {name}: {p}")
        if problems:
            failed[name] = problems
        print(f"-- {name}: {'FAILED' if problems else 'ok'} in {times[name]:.0f} s", flush=True)
    verdicts = [f"{n} {'FAILED' if n in failed else 'ok'} ({t:.0f} s)" for n, t in times.items()]
    print("\ncheck-arm64: " + ", ".join(verdicts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

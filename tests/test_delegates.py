"""External TFLite delegates: model.delegate / --delegate, one-line errors, and a real delegate library.

No accelerator here, so the positive path uses a do-nothing delegate compiled from C below: it
exports the external-delegate entry points, is loaded through the runtime's ``load_delegate`` and
passed as ``experimental_delegates`` exactly as libedgetpu.so.1 would be, and claims no ops. It can
also take its time to start (``hold_ms``), which opens a window inside the model load that a
test can hit with a signal deterministically.
"""

from __future__ import annotations

import ctypes.util
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest

from edge.bundle import write_bundle
from edge.config import example_toml, parse_config
from edge.delegates import DelegateSpec, parse_options
from edge.errors import DelegateError, ShelfscanError
from edge.labels import read_labels
from edge.preprocess import PreprocessSpec
from tests.conftest import run_cli
from tests.mqtt_helpers import SCHEMAS, Subscriber, agent_config
from tests.test_agent import assert_no_gap, looping, start_agent, stop_agent

NOOP_DELEGATE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* TfLiteDelegate's leading fields (tensorflow/lite/core/c/common.h); zeroed room for newer ones. */
typedef struct Delegate {
  void* data;
  int (*prepare)(void* context, struct Delegate* delegate);
  void* copy_from_buffer_handle;
  void* copy_to_buffer_handle;
  void* free_buffer_handle;
  int64_t flags;
  void* opaque_delegate_builder;
  char reserved[256];
} Delegate;

static int prepare(void* context, Delegate* delegate) { (void)context; (void)delegate; return 0; }

/* hold_file + hold_ms: the first time (the file does not exist yet) create the file, then take hold_ms
   to start, as a slow accelerator does; the test sends its signal inside that window. */
static void hold(const char* file, const char* ms) {
  if (!file || !ms || access(file, F_OK) == 0) return;
  FILE* f = fopen(file, "w");
  if (f) fclose(f);
  long n = atol(ms);
  struct timespec t = {n / 1000, (n % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

Delegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report_error)(const char*)) {
  const char* hold_file = NULL;
  const char* hold_ms = NULL;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(keys[i], "fail") == 0) { report_error("refused: no device"); return NULL; }
    if (strcmp(keys[i], "hold_file") == 0) hold_file = values[i];
    if (strcmp(keys[i], "hold_ms") == 0) hold_ms = values[i];
  }
  hold(hold_file, hold_ms);
  Delegate* d = calloc(1, sizeof(Delegate));
  if (d) d->prepare = prepare;
  return d;
}

void tflite_plugin_destroy_delegate(Delegate* d) { free(d); }
"""


@pytest.fixture(scope="module")
def noop_delegate(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test delegate")
    root = tmp_path_factory.mktemp("delegate")
    (root / "noop_delegate.c").write_text(NOOP_DELEGATE_C)
    lib = root / "libnoop_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(root / "noop_delegate.c")], check=True)
    return lib


@pytest.fixture(scope="module")
def ref_bundle(reference, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("delegate_bundles") / "ref-int8"
    write_bundle(
        out,
        reference / "mobilenet_v2_1.0_224_quant.tflite",
        read_labels(reference / "imagenet_labels.txt"),
        PreprocessSpec(height=224, width=224),
        name="ref",
        version="1",
        backbone="mobilenet_v2",
        variant="int8",
    )
    return out


def one_error_line(stderr: str, command: str) -> str:
    """The single error line a CLI prints; no traceback, no finaliser noise."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith(f"shelfscan-agent {command}: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


MISSING = "/nonexistent/libedgetpu.so.1"


def test_config_accepts_model_delegate():
    cfg = parse_config(
        {
            "model": {"bundle": "b", "delegate": "libedgetpu.so.1", "delegate_options": {"device": "usb"}},
            "source": {"kind": "camera", "camera": 0},
        }
    )
    assert cfg.model.delegate_spec() == DelegateSpec("libedgetpu.so.1", {"device": "usb"})
    plain = parse_config({"model": {"bundle": "b"}, "source": {"kind": "camera", "camera": 0}})
    assert plain.model.delegate_spec() is None
    with pytest.raises(ShelfscanError, match=r"delegate_options needs model\.delegate"):
        parse_config(
            {"model": {"bundle": "b", "delegate_options": {"device": "usb"}}, "source": {"kind": "camera", "camera": 0}}
        )
    assert "delegate_options = {}" in example_toml()


def test_option_pairs():
    assert parse_options(["device=usb", " x = 1 "]) == {"device": "usb", "x": "1"}
    with pytest.raises(DelegateError, match="KEY=VALUE"):
        parse_options(["device"])


def test_classify_missing_delegate_is_one_line(reference):
    proc = run_cli(
        "classify",
        str(reference / "samples" / "coffee.png"),
        "--model",
        str(reference / "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        "--delegate",
        MISSING,
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr, "classify")
    assert f"delegate {MISSING}: cannot load the library" in line and "No such file" in line


def test_bench_missing_delegate_is_one_line(ref_bundle):
    proc = run_cli("bench", str(ref_bundle), "--runs", "2", "--warmup", "1", "--delegate", MISSING)
    assert proc.returncode == 2
    assert f"delegate {MISSING}: cannot load the library" in one_error_line(proc.stderr, "bench")


def test_bench_takes_the_delegate_from_the_config(ref_bundle, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(f'[model]\nbundle = "{ref_bundle}"\ndelegate = "{MISSING}"\n[source]\nkind = "picamera2"\n')
    proc = run_cli("bench", str(ref_bundle), "--runs", "2", "--config", str(config))
    assert proc.returncode == 2 and MISSING in one_error_line(proc.stderr, "bench")


def test_a_library_that_is_no_delegate_is_one_line(reference):
    libz = ctypes.util.find_library("z")
    if libz is None:
        pytest.skip("no libz to stand in for a non-delegate library")
    proc = run_cli(
        "classify",
        str(reference / "samples" / "coffee.png"),
        "--model",
        str(reference / "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        "--delegate",
        libz,
    )
    assert proc.returncode == 2
    assert "not a TFLite delegate library" in one_error_line(proc.stderr, "classify")


def test_classify_runs_through_a_delegate(reference, noop_delegate):
    args = [
        str(reference / "samples" / "coffee.png"),
        "--model",
        str(reference / "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        "--json",
    ]
    plain = run_cli("classify", *args, check=True)
    delegated = run_cli("classify", *args, "--delegate", str(noop_delegate), check=True)
    doc, base = json.loads(delegated.stdout), json.loads(plain.stdout)
    assert doc["delegate"]["external"] == {"library": str(noop_delegate), "options": {}}
    assert base["delegate"]["external"] is None
    assert doc["results"][0]["top_k"] == base["results"][0]["top_k"]  # it claimed no ops: the same CPU path


def test_delegate_that_fails_to_start_is_one_line(reference, noop_delegate):
    proc = run_cli(
        "classify",
        str(reference / "samples" / "coffee.png"),
        "--model",
        str(reference / "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels",
        str(reference / "imagenet_labels.txt"),
        "--delegate",
        str(noop_delegate),
        "--delegate-option",
        "fail=1",
    )
    assert proc.returncode == 2
    line = one_error_line(proc.stderr, "classify")
    assert "failed to create the delegate" in line and "refused: no device" in line


def test_bench_reports_the_delegate(ref_bundle, noop_delegate):
    proc = run_cli(
        "bench",
        str(ref_bundle),
        "--runs",
        "2",
        "--warmup",
        "1",
        "--json",
        "--delegate",
        str(noop_delegate),
        "--delegate-option",
        "device=usb",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "bench.schema.json").read_text()))
    row = doc["results"][0]
    assert row["delegate"]["external"] == {"library": str(noop_delegate), "options": {"device": "usb"}}
    table = run_cli("bench", str(ref_bundle), "--runs", "2", "--warmup", "1", "--delegate", str(noop_delegate))
    assert table.returncode == 0, table.stderr
    assert "delegate (ops)" in table.stdout and "libnoop_delegate.so (" in table.stdout


def test_detect_runs_through_a_delegate_and_names_a_missing_one(tiny_detector, noop_delegate):
    bundle = str(tiny_detector["bundles"] / "run-int8")
    images = str(tiny_detector["eval"])
    missing = run_cli("detect", images, "--bundle", bundle, "--delegate", MISSING)
    assert missing.returncode == 2
    assert f"delegate {MISSING}: cannot load the library" in one_error_line(missing.stderr, "detect")
    plain = json.loads(run_cli("detect", images, "--bundle", bundle, "--json", check=True).stdout)
    delegated = json.loads(
        run_cli("detect", images, "--bundle", bundle, "--json", "--delegate", str(noop_delegate), check=True).stdout
    )
    assert delegated["delegate"]["external"] == {"library": str(noop_delegate), "options": {}}
    assert delegated["results"] == plain["results"] and plain["results"]  # it claimed no ops: the same CPU path


def test_sigterm_while_the_model_loads_ends_the_start_cleanly(tmp_path, broker, bundle, video, noop_delegate):
    """SIGTERM inside the model-load window (the delegate takes 5 s to start, the signal arrives 0.2 s in):
    one line, exit 0, nothing published, no traceback; the next start runs and its durable seq begins at 1
    with no gap (the interrupted start took none)."""
    entered = tmp_path / "delegate-started"
    delegate = {"delegate": str(noop_delegate), "delegate_options": {"hold_file": str(entered), "hold_ms": "5000"}}
    config = agent_config(tmp_path, broker.port, bundle, looping(video), model=delegate)
    sub = Subscriber(broker.port, "test/robot-1/#", client_id="inventory")
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    deadline = time.monotonic() + 60
    while not entered.exists():
        assert agent.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.02)
    time.sleep(0.2)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "stopped by SIGTERM while starting; nothing was published" in text, text[-2000:]
    assert "Traceback" not in text and "Exception ignored" not in text, text[-2000:]
    time.sleep(0.5)
    assert not sub.messages, sub.messages
    agent = start_agent(config, log)  # the file exists now: the delegate starts at once
    try:
        assert sub.wait_for(lambda s: len(s.of("sighting")) >= 2, 60), log.read_text()[-2000:]
    finally:
        stop_agent(agent, log)
    assert assert_no_gap(sub)[0] == 1

"""The one preprocessing implementation: hand-computed values, geometry, colour and decoding."""

from __future__ import annotations

import io
import os
import platform
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from edge import resample
from edge.errors import ImageError
from edge.preprocess import Preprocessor, PreprocessSpec, crop_box, decode_image, read_image


def spec(**kw) -> PreprocessSpec:
    return PreprocessSpec(**{"height": 2, "width": 2, "interpolation": "nearest", **kw})


def flat(value: int | tuple[int, int, int], h: int = 2, w: int = 2) -> np.ndarray:
    return np.broadcast_to(np.array(value, np.uint8), (h, w, 3)).copy()


def test_float32_minus_one_to_one_hand_values():
    pre = Preprocessor(spec(mean=(127.5,) * 3, std=(127.5,) * 3), "float32")
    assert pre.from_rgb(flat(0))[0, 0, 0, 0] == pytest.approx(-1.0)
    assert pre.from_rgb(flat(255))[0, 0, 0, 0] == pytest.approx(1.0)
    assert pre.from_rgb(flat(51))[0, 0, 0, 0] == pytest.approx((51 - 127.5) / 127.5)
    out = pre.from_rgb(flat((10, 20, 30)))
    assert out.dtype == np.float32 and out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, 1, 1], [(10 - 127.5) / 127.5, (20 - 127.5) / 127.5, (30 - 127.5) / 127.5], 1e-6)


def test_float32_per_channel_mean_std():
    pre = Preprocessor(spec(mean=(100.0, 50.0, 0.0), std=(2.0, 4.0, 255.0)), "float32")
    np.testing.assert_allclose(pre.from_rgb(flat((110, 70, 255)))[0, 0, 0], [5.0, 5.0, 1.0], 1e-6)


def test_uint8_affine_hand_values():
    # q = ((x - 127.5) / 127.5) / 0.0078125 + 128 = 1.0039216 * (x - 127.5) + 128
    pre = Preprocessor(spec(), "uint8", scale=0.0078125, zero_point=128)
    assert pre.mode == "affine"
    got = [int(pre.from_rgb(flat(x))[0, 0, 0, 0]) for x in (0, 100, 127, 128, 255)]
    # 0 -> 0.0, 100 -> 100.39, 127 -> 127.498, 128 -> 128.502, 255 -> 256.0 (clipped)
    assert got == [0, 100, 127, 129, 255]


def test_int8_affine_hand_values():
    # q = (x - 127.5) / 127.5 / (1/128): 0 -> -128, 127 -> -0.502, 128 -> 0.502, 255 -> 128 (clipped)
    pre = Preprocessor(spec(), "int8", scale=1 / 128, zero_point=0)
    assert pre.mode == "affine"
    got = [int(pre.from_rgb(flat(x))[0, 0, 0, 0]) for x in (0, 127, 128, 255)]
    assert got == [-128, -1, 1, 127]
    assert pre.buffer.dtype == np.int8


def test_raw_pixel_fast_paths():
    """Quantization that is the identity (uint8) or a shift by 128 (int8) skips the float math."""
    u8 = Preprocessor(spec(mean=(127.0,) * 3, std=(127.5,) * 3), "uint8", scale=2 / 255, zero_point=127)
    assert u8.mode == "copy"
    assert [int(u8.from_rgb(flat(x))[0, 0, 0, 0]) for x in (0, 1, 200, 255)] == [0, 1, 200, 255]
    i8 = Preprocessor(spec(mean=(0.0,) * 3, std=(1.0,) * 3), "int8", scale=1.0, zero_point=-128)
    assert i8.mode == "xor"
    assert [int(i8.from_rgb(flat(x))[0, 0, 0, 0]) for x in (0, 1, 128, 255)] == [-128, -127, 0, 127]


def test_crop_box_policies():
    s = PreprocessSpec(height=224, width=224)
    assert crop_box(480, 640, s) == (0, 480, 80, 560)
    assert crop_box(640, 480, s) == (80, 560, 0, 480)
    assert crop_box(480, 640, s.model_copy(update={"resize": "stretch"})) == (0, 480, 0, 640)
    assert crop_box(480, 640, s.model_copy(update={"crop_fraction": 0.875})) == (30, 450, 110, 530)
    wide = PreprocessSpec(height=100, width=200)
    assert crop_box(480, 640, wide) == (80, 400, 0, 640)


def test_center_crop_drops_borders_and_stretch_keeps_them():
    img = flat((0, 255, 0), 4, 8)
    img[:, :2] = (255, 0, 0)  # red left quarter (RGB)
    crop = Preprocessor(spec(height=4, width=4, mean=(0.0,) * 3, std=(1.0,) * 3), "float32")
    stretch = Preprocessor(spec(height=4, width=4, mean=(0.0,) * 3, std=(1.0,) * 3, resize="stretch"), "float32")
    assert crop.from_rgb(img)[0, :, :, 0].max() == 0  # no red survives the centre crop
    assert stretch.from_rgb(img)[0, :, 0, 0].min() == 255  # left column is red


def test_bgr_frame_rgb_file_pil_and_bytes_agree(tmp_path):
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "frame.png"
    assert cv2.imwrite(str(path), bgr)
    pre = Preprocessor(PreprocessSpec(height=32, width=32), "float32")
    ref = pre.from_bgr(bgr).copy()
    np.testing.assert_array_equal(pre.from_rgb(np.ascontiguousarray(bgr[..., ::-1])), ref)
    np.testing.assert_array_equal(pre.from_path(path), ref)
    np.testing.assert_array_equal(pre.from_bytes(path.read_bytes()), ref)
    np.testing.assert_array_equal(pre.from_pil(Image.open(path)), ref)


def test_bgr_model_gets_swapped_channels():
    rgb = Preprocessor(spec(mean=(0.0,) * 3, std=(1.0,) * 3), "float32")
    bgr = Preprocessor(spec(mean=(0.0,) * 3, std=(1.0,) * 3, color_order="BGR"), "float32")
    frame = flat((10, 20, 30))  # as BGR
    assert rgb.from_bgr(frame)[0, 0, 0].tolist() == [30, 20, 10]
    assert bgr.from_bgr(frame)[0, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize(
    "shape",
    # camera frames to classifier and detector inputs, a 22x reduction, a small crop enlarged, and an
    # output of fewer rows than one strip (32): one thread does it all whatever was asked
    [
        (480, 640, 224, 224),
        (300, 451, 224, 224),
        (1080, 1920, 299, 299),
        (50, 40, 96, 96),
        (1080, 1920, 48, 48),
        (480, 640, 20, 20),
    ],
)
def test_antialias_resize_matches_pillow_exactly(shape, threads):
    h, w, oh, ow = shape
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    box = (y0, y0 + s, x0, x0 + s)
    want = np.asarray(Image.fromarray(img[y0 : y0 + s, x0 : x0 + s]).resize((ow, oh), Image.Resampling.BILINEAR))
    got = resample.resize_antialias(img, box, np.empty((oh, ow, 3), np.uint8), threads=threads)
    assert resample.backend() == "c"  # built by `make setup`; the fallback is tested below
    np.testing.assert_array_equal(got, want)
    swapped = resample.resize_antialias(img, box, np.empty((oh, ow, 3), np.uint8), swap=True, threads=threads)
    np.testing.assert_array_equal(swapped, want[..., ::-1])


def test_threaded_resizes_from_several_callers_and_after_fork_are_exact():
    # The helper threads serve one call at a time; concurrent callers (agent pipeline, live page, a
    # rollout's canary) must each get their own exact pixels, and a forked child starts helpers anew.
    img = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    box = (0, 480, 80, 560)
    want = np.asarray(Image.fromarray(img[:, 80:560]).resize((224, 224), Image.Resampling.BILINEAR))
    resample.resize_antialias(img, box, np.empty((224, 224, 3), np.uint8), threads=2)  # helpers started
    wrong: list[int] = []

    def caller() -> None:
        out = np.empty((224, 224, 3), np.uint8)
        for _ in range(40):
            if not np.array_equal(resample.resize_antialias(img, box, out, threads=2), want):
                wrong.append(1)

    callers = [threading.Thread(target=caller) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in callers), "a resize never returned"
    assert not wrong
    # Fork while another thread is in the middle of a threaded resize (a helper mid-strip at the fork
    # left the child's pool waiting for it forever until the child's pool state was reset): the child
    # must still resize exactly, and at all. Found by review; 36 of 40 children hung before the fix.
    stop = threading.Event()

    def busy() -> None:
        out = np.empty((224, 224, 3), np.uint8)
        while not stop.is_set():
            resample.resize_antialias(img, box, out, threads=2)

    background = threading.Thread(target=busy)
    background.start()
    try:
        for i in range(12):
            time.sleep(0.001 * (i % 5))
            pid = os.fork()
            if pid == 0:  # the child: no helper threads came along
                got = resample.resize_antialias(img, box, np.empty((224, 224, 3), np.uint8), threads=2)
                os._exit(0 if np.array_equal(got, want) else 3)
            deadline = time.monotonic() + 20
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            if done[0] == 0:  # spinning in C with the GIL released: only a signal ends it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"fork {i}: the child's resize never returned")
            assert os.waitstatus_to_exitcode(done[1]) == 0, f"fork {i}: child exit {os.waitstatus_to_exitcode(done[1])}"
    finally:
        stop.set()
        background.join(timeout=60)


def test_strided_frames_are_resized_like_contiguous_ones():
    img = np.random.default_rng(11).integers(0, 256, (240, 640, 3), dtype=np.uint8)
    view = img[:, ::2]  # e.g. a decimated camera frame: not C-contiguous
    raw = spec(height=64, width=64, interpolation="bilinear_antialias", mean=(0.0,) * 3, std=(1.0,) * 3)
    pre = Preprocessor(raw, "uint8", 1.0, 0)
    assert pre.mode == "copy"  # resized straight into the input buffer, channels swapped on the way
    want = pre.from_bgr(np.ascontiguousarray(view)).copy()
    np.testing.assert_array_equal(pre.from_bgr(view), want)


def test_resize_kernel_is_reported():
    # the vector instructions of the one portable C path, as this machine runs it
    expected = {"aarch64": {"c-neon"}, "x86_64": {"c-avx2", "c-sse2"}}.get(platform.machine(), {"c"})
    assert resample.kernel() in expected


def test_pillow_fallback_gives_identical_pixels(monkeypatch):
    img = np.random.default_rng(7).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    fast = resample.resize_antialias(img, (0, 200, 50, 250), np.empty((64, 64, 3), np.uint8)).copy()
    monkeypatch.setattr(resample, "_resample", None)
    assert resample.backend() == "pillow" and resample.kernel() == "pillow"
    np.testing.assert_array_equal(
        resample.resize_antialias(img, (0, 200, 50, 250), np.empty((64, 64, 3), np.uint8)), fast
    )
    np.testing.assert_array_equal(
        resample.resize_antialias(img, (0, 200, 50, 250), np.empty((64, 64, 3), np.uint8), swap=True),
        fast[..., ::-1],
    )


def test_preprocess_rejects_wrong_arrays():
    pre = Preprocessor(spec(), "float32")
    with pytest.raises(ImageError, match=r"HxWx3 uint8"):
        pre.from_bgr(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError, match=r"HxWx3 uint8"):
        pre.from_bgr(np.zeros((4, 4, 3), np.float32))


def test_decode_errors_name_the_problem(tmp_path):
    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"", "a.jpg")
    with pytest.raises(ImageError, match=r"notes\.txt: cannot decode image"):
        decode_image(b"shopping list: milk, eggs", "notes.txt")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    for cut in (len(data) // 2, 40, 2):
        with pytest.raises(ImageError, match=r"cut.jpg: (corrupt or truncated JPEG|truncated JPEG)"):
            decode_image(data[:-cut], "cut.jpg")
    with pytest.raises(ImageError, match=r"missing\.png: cannot read file"):
        read_image(tmp_path / "missing.png")
    gray = decode_image(cv2.imencode(".png", np.zeros((5, 5), np.uint8))[1].tobytes())
    assert gray.shape == (5, 5, 3)


def test_preprocessor_names_the_resize_code_it_runs():
    antialias = Preprocessor(spec(height=8, width=8, interpolation="bilinear_antialias"), "uint8", 1.0, 0)
    assert antialias.resize_kernel == resample.kernel()
    assert Preprocessor(spec(height=8, width=8, interpolation="area"), "uint8", 1.0, 0).resize_kernel == "opencv-area"

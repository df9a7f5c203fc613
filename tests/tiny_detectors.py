"""Tiny real TFLite detectors for tests, with outputs known in advance.

Built with TensorFlow (a test-only dependency; ``edge`` never imports it). The weights are set
by hand, so every expected box can be written down:

* ``centernet``: a 48x64 input (stride 8, a 6x8 grid). The heatmap is
  ``sigmoid(GAIN * (cell mean of the input) + BIAS)``, so a white square filling one cell of a
  black frame is one peak there and nowhere else; the box distances are the constant
  :data:`LTRB` (a 1x1 convolution with a zero kernel and that bias).
* ``postprocess_op``: the real ``TFLite_Detection_PostProcess`` custom op, made the way the
  TF2 Object Detection API exports SSD models: a ``tf.function`` marked
  ``experimental_implements`` with the op's attributes, which the converter replaces by the
  op. Box encodings are zero, so the boxes are the anchors; class scores are fixed. The
  converter lists its outputs out of the op's order (classes, count, boxes, scores here),
  which is what the device must survive.
* ``postprocess_keras``: the same four output shapes from ordinary Keras layers (dense layers
  with zero kernels and fixed biases), without the op: roles then come from names or order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEIGHT, WIDTH, STRIDE = 48, 64, 8
GAIN, BIAS = 8.0, -4.0  # input in [-1, 1]: black cell -> sigmoid(-12), white cell -> sigmoid(4) = 0.982
LTRB = (1.0, 1.5, 2.0, 0.5)  # left, top, right, bottom distances in strides

PP_SIZE = 16
PP_BOXES = ((0.1, 0.2, 0.5, 0.6), (0.5, 0.5, 0.9, 1.0), (0.0, 0.0, 0.2, 0.2), (0.3, 0.3, 0.4, 0.4))  # ymin,xmin,...
PP_SCORES = (0.9, 0.6, 0.2, 0.0)
PP_CLASSES = (2.0, 0.0, 1.0, 0.0)
PP_COUNT = 3.0  # the fourth slot is padding, as the real op pads to max_detections
# The op's attributes: it keeps boxes scoring above 0.1 (so the 0.05 one is dropped), at most 4.
_OP_SIGNATURE = " ".join(
    [
        'name: "TFLite_Detection_PostProcess"',
        'attr { key: "max_detections" value { i: 4 } }',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        'attr { key: "use_regular_nms" value { b: false } }',
        'attr { key: "nms_score_threshold" value { f: 0.1 } }',
        'attr { key: "nms_iou_threshold" value { f: 0.5 } }',
        'attr { key: "y_scale" value { f: 10.0 } }',
        'attr { key: "x_scale" value { f: 10.0 } }',
        'attr { key: "h_scale" value { f: 5.0 } }',
        'attr { key: "w_scale" value { f: 5.0 } }',
        'attr { key: "num_classes" value { i: 3 } }',
    ]
)


def cell_box(i: int, j: int) -> tuple[float, float, float, float]:
    """The box (x0, y0, x1, y1) in input pixels that the centernet model gives for a peak at cell (i, j)."""
    left, top, right, bottom = LTRB
    x, y = j + 0.5, i + 0.5
    return ((x - left) * STRIDE, (y - top) * STRIDE, (x + right) * STRIDE, (y + bottom) * STRIDE)


def centernet_model():
    import keras

    inputs = keras.Input((HEIGHT, WIDTH, 3))
    cells = keras.layers.AveragePooling2D(STRIDE)(inputs)
    heat = keras.layers.Conv2D(1, 1, activation="sigmoid", name="heatmap")
    boxes = keras.layers.Conv2D(4, 1, activation="relu", name="boxes")
    outputs = [boxes(cells), heat(cells)]  # boxes first: the decoder must not rely on order
    heat.set_weights([np.full((1, 1, 3, 1), GAIN / 3, np.float32), np.array([BIAS], np.float32)])
    boxes.set_weights([np.zeros((1, 1, 3, 4), np.float32), np.array(LTRB, np.float32)])
    return keras.Model(inputs, outputs)


def postprocess_model():
    import keras

    inputs = keras.Input((PP_SIZE, PP_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    n = len(PP_SCORES)

    def fixed(units: int, bias: tuple[float, ...], name: str):
        layer = keras.layers.Dense(units, name=name)
        out = layer(x)
        layer.set_weights([np.zeros((3, units), np.float32), np.array(bias, np.float32)])
        return out

    boxes = keras.layers.Reshape((n, 4))(fixed(4 * n, tuple(np.ravel(PP_BOXES)), "boxes"))
    scores = fixed(n, PP_SCORES, "scores")
    classes = fixed(n, PP_CLASSES, "classes")
    count = keras.ops.squeeze(fixed(1, (PP_COUNT,), "count"), axis=-1)
    return keras.Model(inputs, [scores, boxes, count, classes])


def postprocess_op_tflite() -> bytes:
    """The real post-processing op over 4 anchors (``yc, xc, h, w``) equal to :data:`PP_BOXES`, zero encodings."""
    import tensorflow as tf

    anchors = np.array([((y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0) for y0, x0, y1, x1 in PP_BOXES], np.float32)
    # Column 0 is the background class; PP_CLASSES[k] + 1 holds box k's score (the last one below the op's 0.1).
    class_scores = np.zeros((1, len(PP_BOXES), 4), np.float32)
    for k, (cls, score) in enumerate(zip(PP_CLASSES, PP_SCORES, strict=True)):
        class_scores[0, k, int(cls) + 1] = score if k < PP_COUNT else 0.05

    @tf.function(experimental_implements=_OP_SIGNATURE)
    def post_process(encodings, scores, anchors):  # replaced by the op; the body is never run
        return (
            tf.constant(0.0, name="boxes"),
            tf.constant(0.0, name="classes"),
            tf.constant(0.0, name="scores"),
            tf.constant(0.0, name="num_detections"),
        )

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, PP_SIZE, PP_SIZE, 3], tf.float32)])
        def serve(self, x):
            zero = 0.0 * tf.reduce_mean(x, axis=[1, 2, 3])[:, None, None]  # keep the graph input-dependent
            return post_process(tf.zeros([1, len(PP_BOXES), 4]) + zero, class_scores + zero, tf.constant(anchors))

    model = Model()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.serve.get_concrete_function()], model)
    converter.allow_custom_ops = True
    return converter.convert()


def wrong_outputs_model():
    """Two outputs that are neither the centernet pair nor the post-processing four."""
    import keras

    inputs = keras.Input((PP_SIZE, PP_SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, [keras.layers.Dense(3)(x), keras.layers.Dense(5)(x)])


def representative_frames(height: int, width: int):
    """Black frames with white cells, and noise: the heatmap's whole range is calibrated."""
    rng = np.random.default_rng(0)
    for k in range(24):
        if k % 3 == 2:
            yield [rng.uniform(-1, 1, (1, height, width, 3)).astype(np.float32)]
            continue
        x = np.full((1, height, width, 3), -1.0, np.float32)
        i, j = rng.integers(0, height // STRIDE), rng.integers(0, width // STRIDE)
        x[0, i * STRIDE : (i + 1) * STRIDE, j * STRIDE : (j + 1) * STRIDE] = 1.0
        yield [x]


def convert(model, quantize: str | None = None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        height, width = model.inputs[0].shape[1:3]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_frames(height, width)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, quantize)
        converter.inference_output_type = getattr(tf, quantize)
    return converter.convert()


def build_tiny_detectors(out: Path) -> dict[str, Path]:
    """``centernet_float``, ``centernet_int8``, ``postprocess_op``, ``postprocess_keras``, ``wrong_outputs`` files."""
    centernet = centernet_model()
    flavours = {
        "centernet_float": (centernet, None),
        "centernet_int8": (centernet, "int8"),
        "postprocess_keras": (postprocess_model(), None),
        "wrong_outputs": (wrong_outputs_model(), None),
    }
    paths = {}
    for name, (model, quantize) in flavours.items():
        path = out / f"{name}.tflite"
        path.write_bytes(convert(model, quantize))
        paths[name] = path
    paths["postprocess_op"] = out / "postprocess_op.tflite"
    paths["postprocess_op"].write_bytes(postprocess_op_tflite())
    return paths


def build_tiny_detector(root: Path, shared: Path) -> dict[str, Path]:
    """A tiny real detector trained on toy photos: 96x128 input, a few shelves, two epochs; fp32 and int8 bundles."""
    from converter.cli import main as convert
    from tests.toydata import flat_photos
    from trainer.cli import main as train

    photos = flat_photos(root / "photos")
    data = root / "data"
    for split in ("train", "val"):
        for d in photos.iterdir():
            (data / split / d.name).mkdir(parents=True)
            for p in d.iterdir():
                (data / split / d.name / p.name).write_bytes(p.read_bytes())
    weights = shared / "models" / "mobilenet_v2_1.0_224_imagenet" / "mobilenet_v2_1.0_224_imagenet_notop.weights.h5"
    run = root / "run"
    args = [
        str(data),
        "--task",
        "detect",
        "--out",
        str(run),
        "--weights",
        str(weights),
        "--input-size",
        "96x128",
        "--train-shelves",
        "24",
        "--val-shelves",
        "6",
        "--epochs",
        "2",
        "--score-threshold",
        "0.1",
    ]
    assert train(args) == 0
    assert train([str(photos), "--compose", "4", "--seed", "9", "--out", str(root / "eval")]) == 0
    rc = convert(
        [
            str(run),
            "--out",
            str(root / "bundles"),
            "--variants",
            "fp32,int8",
            "--eval",
            str(root / "eval"),
            "--calibration-count",
            "8",
            "--max-drop",
            "100",
            "--bench-runs",
            "2",
        ]
    )
    assert rc == 0
    return {"run": run, "bundles": root / "bundles", "eval": root / "eval"}

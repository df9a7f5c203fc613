"""The facing detector's network, its training targets and its losses (CenterNet-style, anchor-free).

Why this shape: a frozen ImageNet MobileNetV2 up to stride 16 (``block_13_expand_relu``) gives
features that already separate product edges; a small trainable neck brings them back to
stride 8 beside ``block_6_expand_relu`` so that two touching facings 40 input pixels wide are
five cells apart, and predicts per cell a centre score and the distances to the four edges
(docs/detector.md). Because the backbone part is frozen, its two feature maps are computed once
per composed shelf and cached in memory, and only the neck trains: minutes on two cores instead
of hours. Everything is plain Conv/ReLU6/Add/UpSampling, which quantizes to int8 cleanly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STRIDE = 8
FEATURE_LAYERS = ("block_6_expand_relu", "block_13_expand_relu")  # stride 8 (192 ch), stride 16 (576 ch)
HEAT_PRIOR = 0.05  # initial centre probability (focal-loss convention: starts near the background rate)


def build_backbone_features(weights: str, height: int, width: int) -> Any:
    """MobileNetV2 cut at the two feature maps the neck reads; frozen, BatchNorm in inference mode.

    ``weights``: ``imagenet`` (Keras cache), a MobileNetV2 ``.h5``/``.weights.h5`` file, or ``none``.
    """
    import keras

    from trainer import backbones

    base = backbones.build(backbones.get_backbone("mobilenet_v2"), (height, width), weights)
    base.trainable = False
    outs = [base.get_layer(name).output for name in FEATURE_LAYERS]
    return keras.Model(base.input, outs, name="facing_features")


def build_neck(channels: tuple[int, int], width: int = 96) -> Any:
    """The trainable part: stride-16 context upsampled onto stride-8 detail, then the two heads."""
    import keras
    from keras import layers

    f8 = keras.Input((None, None, channels[0]), name="f8")
    f16 = keras.Input((None, None, channels[1]), name="f16")

    def sep(x: Any, name: str) -> Any:
        x = layers.DepthwiseConv2D(3, padding="same", name=f"{name}_dw")(x)
        return layers.Conv2D(width, 1, activation="relu6", name=f"{name}_pw")(x)

    x16 = layers.Conv2D(width, 1, activation="relu6", name="p16")(f16)
    x16 = sep(sep(x16, "c16a"), "c16b")
    x8 = layers.Conv2D(width, 1, activation="relu6", name="p8")(f8)
    x = layers.Add(name="merge")([x8, layers.UpSampling2D(2, name="up")(x16)])
    x = sep(sep(x, "c8a"), "c8b")
    heat = sep(x, "heat_c")
    prior = keras.initializers.Constant(float(np.log(HEAT_PRIOR / (1 - HEAT_PRIOR))))
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heatmap", bias_initializer=prior)(heat)
    box = sep(x, "box_c")
    box = layers.Conv2D(4, 1, activation="relu", name="boxes", bias_initializer=keras.initializers.Constant(2.0))(box)
    return keras.Model([f8, f16], [heat, box], name="facing_neck")


def assemble(features: Any, neck: Any) -> Any:
    """The one model that is exported: image in, ``heatmap`` and ``boxes`` out."""
    import keras

    f8, f16 = features.outputs
    heat, box = neck([f8, f16])
    heat = keras.layers.Identity(name="heatmap")(heat)
    box = keras.layers.Identity(name="boxes")(box)
    return keras.Model(features.input, [heat, box], name="facing_detector")


def targets(boxes: np.ndarray, grid_h: int, grid_w: int, stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Training targets for one image from its facing boxes (``(N, 4)`` x0, y0, x1, y1 in input pixels).

    Boxes are whole (amodal): a facing cut by the image border keeps its full extent, so the
    network learns where the whole facing is, and "at least half in view" -- the rule of the
    truth -- becomes "its centre is in the image" (the peak cell is clamped into the grid for
    the few that perspective puts just outside). Decoded boxes are clipped to the frame.

    Returns the centre heatmap ``(gh, gw, 1)``: an elliptical Gaussian per facing (sigma a sixth
    of its width and height, so touching neighbours' peaks stay apart) and ``(gh, gw, 5)``:
    the distances left, top, right, bottom from each cell centre to the edges of the facing
    that owns the cell (the one with the strongest Gaussian there), in cells, and the weight of
    that cell in the box loss (its Gaussian value; cells outside every box weigh 0).
    """
    heat = np.zeros((grid_h, grid_w), np.float32)
    reg = np.zeros((grid_h, grid_w, 5), np.float32)
    cy, cx = (np.arange(grid_h, dtype=np.float32) + 0.5), (np.arange(grid_w, dtype=np.float32) + 0.5)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float32).reshape(-1, 4) / stride:
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        # The peak sits on the cell holding the centre, as the decoder reads it.
        px, py = min(grid_w - 1, max(0, int(mx))) + 0.5, min(grid_h - 1, max(0, int(my))) + 0.5
        sx, sy = max(0.5, w / 6), max(0.5, h / 6)
        g = np.exp(-((cy[:, None] - py) ** 2) / (2 * sy**2) - ((cx[None, :] - px) ** 2) / (2 * sx**2))
        inside = (cy[:, None] > y0) & (cy[:, None] < y1) & (cx[None, :] > x0) & (cx[None, :] < x1)
        owner = inside & (g > reg[..., 4])
        reg[owner] = np.stack(
            np.broadcast_arrays(cx[None, :] - x0, cy[:, None] - y0, x1 - cx[None, :], y1 - cy[:, None], g), axis=-1
        )[owner]
        np.maximum(heat, g, out=heat)
    return heat[..., None], reg


def focal_loss(y_true: Any, y_pred: Any) -> Any:
    """CenterNet's penalty-reduced focal loss, normalised by the number of facings."""
    from keras import ops

    p = ops.clip(y_pred, 1e-4, 1 - 1e-4)
    pos = ops.cast(y_true >= 0.999, "float32")
    pos_loss = -ops.log(p) * (1 - p) ** 2 * pos
    neg_loss = -ops.log(1 - p) * p**2 * (1 - y_true) ** 4 * (1 - pos)
    n = ops.maximum(ops.sum(pos), 1.0)
    return (ops.sum(pos_loss) + ops.sum(neg_loss)) / n


def giou_loss(y_true: Any, y_pred: Any) -> Any:
    """1 - GIoU between true and predicted boxes (both as distances from the cell centre), weighted."""
    from keras import ops

    t, w = y_true[..., :4], y_true[..., 4]
    area_t = (t[..., 0] + t[..., 2]) * (t[..., 1] + t[..., 3])
    area_p = (y_pred[..., 0] + y_pred[..., 2]) * (y_pred[..., 1] + y_pred[..., 3])
    iw = ops.minimum(t[..., 0], y_pred[..., 0]) + ops.minimum(t[..., 2], y_pred[..., 2])
    ih = ops.minimum(t[..., 1], y_pred[..., 1]) + ops.minimum(t[..., 3], y_pred[..., 3])
    inter = iw * ih
    union = area_t + area_p - inter + 1e-6
    ew = ops.maximum(t[..., 0], y_pred[..., 0]) + ops.maximum(t[..., 2], y_pred[..., 2])
    eh = ops.maximum(t[..., 1], y_pred[..., 1]) + ops.maximum(t[..., 3], y_pred[..., 3])
    enclose = ew * eh + 1e-6
    giou = inter / union - (enclose - union) / enclose
    return ops.sum((1 - giou) * w) / ops.maximum(ops.sum(w), 1.0)

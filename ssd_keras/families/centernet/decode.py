"""CenterNet decoding: 3x3 max-pool peaks, top-k over all classes, boxes from size + offset. No NMS.

As TF OD API ``top_k_feature_map_locations(per_channel=False)`` and
``prediction_tensors_to_boxes``: a cell is a peak when its score equals the
3x3 max-pool of its class map (within 1e-6); the ``k`` best peaks over all
cells and classes are kept; the centre is ``(x + dx, y + dy)`` and the box
``centre +- (w, h) / 2`` in output-stride pixels (size clamped at 0), clipped to
the output grid, then divided by the grid size (normalised corners of the
input) -- or multiplied by the stride for input pixels (the layer).
"""
from __future__ import annotations

import keras
from keras import ops

from ssd_keras.families.centernet.losses import gather_at_indices

PEAK_EPSILON = 1e-6


def decode_centernet(outputs, max_detections=100, peak_pool=3, score_threshold=0.01):
    """Raw outputs -> padded detections with normalised boxes.

    Args:
        outputs: ``{"object_center": (B, h, w, K) logits, "box_scale": (B, h, w, 2)
            (w, h), "box_offset": (B, h, w, 2) (dx, dy)}`` in output-stride pixels.
        max_detections: ``D`` peaks kept per image over all classes.
        peak_pool: max-pool window of the peak test (1: every cell).
        score_threshold: detections below it are padding (class 0, zero box).

    Returns:
        ``boxes`` ``(B, D, 4)`` normalised ``[xmin, ymin, xmax, ymax]``,
        ``scores`` ``(B, D)`` (descending), ``classes`` ``(B, D)`` int32 ``1..K``
        (0 = padding), ``num_detections`` ``(B,)`` int32.
    """
    heat = ops.sigmoid(ops.cast(outputs["object_center"], "float32"))
    size = ops.maximum(ops.cast(outputs["box_scale"], "float32"), 0.0)
    offset = ops.cast(outputs["box_offset"], "float32")
    shape = ops.shape(heat)
    b, h, w, k = shape[0], shape[1], shape[2], shape[3]
    if peak_pool and peak_pool > 1:
        pooled = ops.max_pool(heat, pool_size=peak_pool, strides=1, padding="same")
        heat = heat * ops.cast(ops.abs(heat - pooled) < PEAK_EPSILON, "float32")
    flat = ops.reshape(heat, (b, -1))
    cells = flat.shape[1]
    k_top = max_detections if cells is None else min(max_detections, int(cells))
    scores, top = ops.top_k(flat, k=k_top, sorted=True)
    if k_top < max_detections:  # fewer cells x classes than detections: padding (score -1 -> dropped)
        scores = ops.pad(scores, [[0, 0], [0, max_detections - k_top]], constant_values=-1.0)
        top = ops.pad(top, [[0, 0], [0, max_detections - k_top]])
    cell = top // k
    classes = top % k + 1
    y = ops.cast(cell // w, "float32")
    x = ops.cast(cell % w, "float32")
    wh = gather_at_indices(size, cell)
    d = gather_at_indices(offset, cell)
    cx = x + d[..., 0]
    cy = y + d[..., 1]
    wf, hf = ops.cast(w, "float32"), ops.cast(h, "float32")
    boxes = ops.stack([
        ops.clip(cx - wh[..., 0] / 2.0, 0.0, wf) / wf,
        ops.clip(cy - wh[..., 1] / 2.0, 0.0, hf) / hf,
        ops.clip(cx + wh[..., 0] / 2.0, 0.0, wf) / wf,
        ops.clip(cy + wh[..., 1] / 2.0, 0.0, hf) / hf], axis=-1)
    keep = scores >= score_threshold
    boxes = boxes * ops.cast(ops.expand_dims(keep, -1), "float32")
    classes = ops.where(keep, classes, 0)
    scores = ops.where(keep, scores, 0.0)
    return {"boxes": boxes, "scores": scores, "classes": ops.cast(classes, "int32"),
            "num_detections": ops.sum(ops.cast(keep, "int32"), axis=1)}


@keras.saving.register_keras_serializable(package="ssd_keras")
class CenterNetDecoder(keras.layers.Layer):
    """Serialisable decoder: raw outputs dict -> detections with boxes in input pixels.

    Args:
        image_size: model input ``(H, W)``; normalised boxes are scaled by it.
        max_detections, peak_pool, score_threshold: see :func:`decode_centernet`.
    """

    def __init__(self, image_size, max_detections=100, peak_pool=3, score_threshold=0.01,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_size = tuple(int(v) for v in image_size)
        self.max_detections = int(max_detections)
        self.peak_pool = int(peak_pool)
        self.score_threshold = float(score_threshold)

    def call(self, outputs):
        det = decode_centernet(outputs, self.max_detections, self.peak_pool, self.score_threshold)
        h, w = self.image_size
        det["boxes"] = det["boxes"] * ops.convert_to_tensor([w, h, w, h], "float32")
        return det

    def get_config(self):
        return {**super().get_config(), "image_size": list(self.image_size),
                "max_detections": self.max_detections, "peak_pool": self.peak_pool,
                "score_threshold": self.score_threshold}

"""The original SSD training augmentation (Liu et al. 2016, Caffe ``ssd`` branch) as TF graph ops.

Every op here is pure TensorFlow (no numpy, no ``py_function``, no Python loop
over boxes), so it runs inside ``tf.data.Dataset.map`` with any
``num_parallel_calls``.

Conventions at every boundary
-----------------------------
``image``
    float32 ``(H, W, 3)`` RGB in ``[0, 255]``; ``H`` and ``W`` may be dynamic.
``boxes``
    float32 ``(m, 4)`` normalised corners ``[xmin, ymin, xmax, ymax]`` in
    ``[0, 1]`` relative to the *current* image (see ``ssd_keras.data.records``).
``labels``
    int32 ``(m,)``.  ``m`` may be 0: images without objects pass through every op.
``seed``
    int32/int64 tensor of shape ``(2,)``.  Only ``tf.random.stateless_*`` ops
    are used, sub-seeds come from ``stateless_split``, so equal seeds give
    identical outputs and a parallel ``map`` stays reproducible.

The chain (:func:`ssd_augment`)
-------------------------------
1. :func:`photometric_distort` -- brightness, contrast, saturation, hue.
2. :func:`expand` -- zoom out onto a mean-coloured canvas up to 4x the size.
3. :func:`min_iou_random_crop` -- the SSD patch sampler (whole image, min IoU
   0.1/0.3/0.5/0.7/0.9, or any patch; 50 vectorised trials).
4. :func:`random_flip` -- horizontal.
5. :func:`random_resize` -- to the model size with a random interpolation.

:func:`ssd_augment` composes 1-5 without ever materialising the expanded
canvas: the crop window is sampled in canvas coordinates, only the part of the
original image inside it is sliced and resized straight to its place in the
output, and the rest of the output is filled with the mean colour.  Photometric
distortion is pixel-wise, so it commutes with expand/crop/flip; it is applied
to that resized image part (at most ``size`` pixels, never the mean fill) rather
than to the full-size original.  The only difference from running the five
ops one after another (``ssd_augment(..., fused=False)``) is sub-pixel: the
image part is placed at whole output pixels (boxes follow that placement
exactly) and the colour distortion sees resampled rather than source pixels.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ssd_keras.boxes import pairwise_iou

#: Caffe SSD's sampler: ``None`` = keep the whole image, a float = a patch whose
#: IoU with some ground-truth box is at least that, ``"any"`` = any patch.
DEFAULT_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9, "any")
#: Interpolations drawn by :func:`random_resize` (Caffe: linear, area, nearest,
#: cubic, lanczos4).  ``"lanczos3"`` may be added; it costs about 3x bilinear.
DEFAULT_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")
#: ImageNet mean RGB in 0-255, the canvas fill Caffe SSD uses.
DEFAULT_MEAN = (123.0, 117.0, 104.0)

_CHANNEL_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


# ----------------------------------------------------------------------------- helpers


def _split(seed, num):
    """``num`` independent ``(2,)`` seeds from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))


def _image_size(image):
    """``(height, width)`` of an ``(H, W, C)`` image as int32 scalars."""
    shape = tf.shape(image)
    return shape[0], shape[1]


def _place_on_mean(part, visible, mean, top, left, out_height, out_width):
    """``part`` (h, w, 3) at (top, left) of a mean-coloured (out_height, out_width) image.

    Built by concatenation, which is about twice as fast as ``tf.pad`` around a
    mean subtraction; ``visible = False`` gives the plain mean image.
    """
    height, width = _image_size(part)
    mean = tf.constant(mean, tf.float32)
    part = tf.where(visible, part, mean)

    def fill(rows, cols):
        return tf.broadcast_to(mean, tf.stack([rows, cols, 3]))

    middle = tf.concat([fill(height, left), part, fill(height, out_width - width - left)], axis=1)
    return tf.concat([fill(top, out_width), middle,
                      fill(out_height - height - top, out_width)], axis=0)


def _resize_with(image, size, method_index, methods):
    """Resize to ``size`` with ``methods[method_index]`` (a graph-time switch)."""
    size = tf.convert_to_tensor(size, tf.int32)
    branches = [
        (lambda m=m: tf.image.resize(image, size, method=m)) for m in methods]
    if len(branches) == 1:
        return branches[0]()
    return tf.switch_case(method_index, branches)


def _flip_boxes(boxes):
    xmin, ymin, xmax, ymax = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([1.0 - xmax, ymin, 1.0 - xmin, ymax], axis=-1)


def _parse_min_ious(min_ious):
    """Sampler modes -> (IoU thresholds, crop flags) as Python lists."""
    thresholds, crops = [], []
    for mode in min_ious:
        if mode is None:
            thresholds.append(-math.inf)
            crops.append(False)
        elif mode == "any":
            thresholds.append(-math.inf)
            crops.append(True)
        else:
            thresholds.append(float(mode))
            crops.append(True)
    if not thresholds:
        raise ValueError("min_ious must name at least one sampler mode")
    return thresholds, crops


# ----------------------------------------------------------------------------- 1. colour


def photometric_distort(image, seed, brightness_delta=32.0, contrast_range=(0.5, 1.5),
                        saturation_range=(0.5, 1.5), hue_delta=18.0, probability=0.5,
                        channel_swap_probability=0.0):
    """Caffe SSD's colour distortion of an RGB ``(H, W, 3)`` float image in ``[0, 255]``.

    Each step is applied independently with ``probability``:

    - brightness: ``x + U(-brightness_delta, brightness_delta)``;
    - contrast: ``x * U(*contrast_range)`` (Caffe's ``convertTo(alpha)``, i.e. a
      plain scale, not TF's scale-about-the-mean ``adjust_contrast``);
    - saturation: HSV ``S * U(*saturation_range)``;
    - hue: HSV ``H + U(-hue_delta, hue_delta)`` degrees;
    - optional random channel permutation (Caffe's ``random_order_prob``; off by default).

    Contrast runs before or after the two HSV steps, chosen with p = 0.5.
    Values are clipped to ``[0, 255]`` after each step, as Caffe's uint8 images
    are.  Returns float32 ``(H, W, 3)``; boxes are unaffected.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    u = tf.random.stateless_uniform([11], seed)
    apply = u[:4] < probability  # brightness, contrast, saturation, hue
    delta = tf.where(apply[0], (2.0 * u[5] - 1.0) * brightness_delta, 0.0)
    alpha = tf.where(apply[1], contrast_range[0] + u[6] * (contrast_range[1] - contrast_range[0]),
                     1.0)
    saturation = saturation_range[0] + u[7] * (saturation_range[1] - saturation_range[0])
    hue = (2.0 * u[8] - 1.0) * (hue_delta / 360.0)  # adjust_hue takes a fraction of the circle
    contrast_first = u[9] < 0.5

    image = tf.clip_by_value(image + delta, 0.0, 255.0)
    image = tf.clip_by_value(image * tf.where(contrast_first, alpha, 1.0), 0.0, 255.0)
    # The HSV kernels are the expensive part: run each only when it is drawn.
    # They are scale-invariant in S and H, but documented for [0, 1], so scale.
    image = tf.cond(apply[2],
                    lambda: tf.image.adjust_saturation(image / 255.0, saturation) * 255.0,
                    lambda: image)
    image = tf.cond(apply[3], lambda: tf.image.adjust_hue(image / 255.0, hue) * 255.0,
                    lambda: image)
    image = tf.clip_by_value(image * tf.where(contrast_first, 1.0, alpha), 0.0, 255.0)
    if channel_swap_probability > 0:
        perm_index = tf.minimum(tf.cast(u[10] * 6.0, tf.int32), 5)
        perm = tf.gather(tf.constant(_CHANNEL_PERMUTATIONS, tf.int32), perm_index)
        image = tf.cond(u[4] < channel_swap_probability,
                        lambda: tf.gather(image, perm, axis=-1), lambda: image)
    return image


# ----------------------------------------------------------------------------- 2. expand


def _sample_expand(seed, height, width, max_ratio, probability):
    """Canvas ``(canvas_h, canvas_w, top, left)`` (int32) for placing an ``(height, width)`` image."""
    u = tf.random.stateless_uniform([4], seed)
    ratio = tf.where(u[0] < probability, 1.0 + u[1] * (max_ratio - 1.0), 1.0)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    canvas_h = tf.maximum(tf.cast(h * ratio, tf.int32), height)
    canvas_w = tf.maximum(tf.cast(w * ratio, tf.int32), width)
    top = tf.cast(u[2] * tf.cast(canvas_h - height + 1, tf.float32), tf.int32)
    left = tf.cast(u[3] * tf.cast(canvas_w - width + 1, tf.float32), tf.int32)
    return canvas_h, canvas_w, tf.minimum(top, canvas_h - height), tf.minimum(left, canvas_w - width)


def expand(image, boxes, labels, seed, mean=DEFAULT_MEAN, max_ratio=4.0, probability=0.5):
    """Zoom out: with ``probability``, put the image on a mean-filled canvas ``U(1, max_ratio)`` times its size.

    Args:
        image: float32 ``(H, W, 3)`` RGB in ``[0, 255]``.
        boxes: float32 ``(m, 4)`` normalised corners of ``image``.
        labels: int32 ``(m,)`` (returned unchanged).
        seed: ``(2,)`` int seed.
        mean: RGB fill colour in 0-255.
        max_ratio: largest canvas side / image side.
        probability: chance of expanding at all.

    Returns:
        ``(image (H', W', 3), boxes (m, 4) normalised to the canvas, labels)``.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), [-1, 4])
    height, width = _image_size(image)
    canvas_h, canvas_w, top, left = _sample_expand(seed, height, width, max_ratio, probability)
    out = _place_on_mean(image, True, mean, top, left, canvas_h, canvas_w)
    size = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
    canvas = tf.cast(tf.stack([canvas_w, canvas_h, canvas_w, canvas_h]), tf.float32)
    return out, (boxes * size + offset) / canvas, labels


# ----------------------------------------------------------------------------- 3. crop


def _sample_crop_window(seed, boxes_px, height, width, min_ious, max_trials, min_scale,
                        max_scale, min_aspect_ratio, max_aspect_ratio):
    """The SSD patch sampler, ``max_trials`` candidates at once.

    Args:
        boxes_px: float32 ``(m, 4)`` corners in pixels of an ``(height, width)`` image.

    Returns:
        ``window`` int32 ``[x0, y0, x1, y1]`` (pixels, end-exclusive) and
        ``keep`` bool ``(m,)``: the boxes whose centre lies strictly inside it.
        The window is the whole image when the drawn mode is "no crop" or no
        trial is valid.
    """
    thresholds, crops = _parse_min_ious(min_ious)
    mode_seed, trial_seed = _split(seed, 2)
    mode = tf.random.stateless_uniform([], mode_seed, 0, len(thresholds), dtype=tf.int32)
    u = tf.random.stateless_uniform([4, max_trials], trial_seed)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    patch_w = tf.maximum(tf.floor((min_scale + u[0] * (max_scale - min_scale)) * w), 1.0)
    patch_h = tf.maximum(tf.floor((min_scale + u[1] * (max_scale - min_scale)) * h), 1.0)
    aspect = patch_w / patch_h
    aspect_ok = (aspect >= min_aspect_ratio) & (aspect <= max_aspect_ratio)
    x0 = tf.minimum(tf.floor(u[2] * (w - patch_w + 1.0)), w - patch_w)
    y0 = tf.minimum(tf.floor(u[3] * (h - patch_h + 1.0)), h - patch_h)
    x1 = x0 + patch_w
    y1 = y0 + patch_h

    # (trials, m) IoU between every candidate patch and every box.
    iou = pairwise_iou(tf.stack([x0, y0, x1, y1], axis=1), boxes_px)
    bx0, by0, bx1, by1 = tf.unstack(boxes_px[None], 4, axis=-1)
    # Caffe's SatisfySampleConstraint and ssd.pytorch's intent: the patch must
    # overlap *some* ground-truth box by the threshold, i.e. max IoU over boxes.
    # (reduce_max over m = 0 gives -inf: only the unconstrained modes pass.)
    max_iou = tf.reduce_max(iou, axis=1)
    centre_x = (bx0 + bx1) * 0.5
    centre_y = (by0 + by1) * 0.5
    centre_in = ((centre_x > x0[:, None]) & (centre_x < x1[:, None])
                 & (centre_y > y0[:, None]) & (centre_y < y1[:, None]))
    # ssd.pytorch: a patch must keep at least one box.  Without boxes there is
    # nothing to keep, so "any" mode may crop freely.
    has_boxes = tf.shape(boxes_px)[0] > 0
    centre_ok = tf.reduce_any(centre_in, axis=1) | tf.logical_not(has_boxes)
    threshold = tf.gather(tf.constant(thresholds, tf.float32), mode)
    valid = aspect_ok & (max_iou >= threshold) & centre_ok
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    do_crop = tf.gather(tf.constant(crops), mode) & tf.reduce_any(valid)

    windows = tf.cast(tf.stack([x0, y0, x1, y1], axis=1), tf.int32)
    whole = tf.stack([0, 0, width, height])
    window = tf.where(do_crop, windows[first], whole)
    keep = tf.where(do_crop, centre_in[first], tf.ones_like(centre_in[first]))
    return window, keep


def _crop_boxes(boxes_px, keep, window):
    """Keep, clip to ``window`` and re-normalise pixel boxes (m, 4) -> (k, 4)."""
    boxes_px = tf.boolean_mask(boxes_px, keep)
    window = tf.cast(window, tf.float32)
    lo = tf.tile(window[:2], [2])
    hi = tf.tile(window[2:], [2])
    clipped = tf.clip_by_value(boxes_px, lo, hi) - lo
    return clipped / (hi - lo)


def min_iou_random_crop(image, boxes, labels, seed, min_ious=DEFAULT_MIN_IOUS, max_trials=50,
                        min_scale=0.3, max_scale=1.0, min_aspect_ratio=0.5,
                        max_aspect_ratio=2.0):
    """SSD's random patch: whole image, a patch with min IoU 0.1 ... 0.9 to some box, or any patch.

    One of ``min_ious`` is drawn uniformly.  ``max_trials`` candidate patches
    (sides ``U(min_scale, max_scale)`` of the image's, aspect ratio ``w / h`` in
    pixels within ``[min_aspect_ratio, max_aspect_ratio]``, whole pixels) are
    sampled at once; the first valid one is used.  A candidate is valid when its
    **maximum** IoU over the ground-truth boxes is ``>=`` the threshold (as in
    Caffe's ``SatisfySampleConstraint`` and the intent of ssd.pytorch's
    ``RandomSampleCrop``) and at least one box centre lies strictly inside it.
    Boxes whose centre is inside are kept, clipped to the patch and
    re-normalised; the others are dropped.  With no valid candidate (or mode
    ``None``) the whole image is returned.  Without boxes, constrained modes
    return the whole image and ``"any"`` crops freely.

    Returns:
        ``(image (h, w, 3), boxes (k, 4), labels (k,))``.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), [-1, 4])
    height, width = _image_size(image)
    scale = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    boxes_px = boxes * scale
    window, keep = _sample_crop_window(seed, boxes_px, height, width, min_ious, max_trials,
                                       min_scale, max_scale, min_aspect_ratio, max_aspect_ratio)
    cropped = image[window[1]:window[3], window[0]:window[2]]
    return cropped, _crop_boxes(boxes_px, keep, window), tf.boolean_mask(labels, keep)


# ----------------------------------------------------------------------------- 4. flip


def random_flip(image, boxes, seed, probability=0.5):
    """Mirror left-right with ``probability``; returns ``(image, boxes)``."""
    image = tf.convert_to_tensor(image, tf.float32)
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), [-1, 4])
    flip = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(flip, lambda: (tf.reverse(image, [1]), _flip_boxes(boxes)),
                   lambda: (image, boxes))


# ----------------------------------------------------------------------------- 5. resize


def random_resize(image, size, seed, methods=DEFAULT_RESIZE_METHODS):
    """Resize to ``size = (height, width)`` with an interpolation drawn from ``methods``.

    Normalised boxes are unchanged by a resize.  Output float32 clipped to
    ``[0, 255]`` (bicubic and lanczos overshoot).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    index = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
    out = tf.clip_by_value(_resize_with(image, size, index, methods), 0.0, 255.0)
    return tf.ensure_shape(out, [size[0], size[1], 3])


def resize(image, size):
    """Plain bilinear resize to ``size = (height, width)`` (evaluation); float32 out."""
    out = tf.image.resize(tf.convert_to_tensor(image, tf.float32), size, method="bilinear")
    return tf.ensure_shape(out, [size[0], size[1], 3])


# ----------------------------------------------------------------------------- the chain


def ssd_augment(image, boxes, labels, seed, size, mean=DEFAULT_MEAN, *, photometric=True,
                expand_max_ratio=4.0, expand_probability=0.5, min_ious=DEFAULT_MIN_IOUS,
                max_trials=50, crop_scale=(0.3, 1.0), crop_aspect_ratio=(0.5, 2.0),
                flip_probability=0.5, resize_methods=DEFAULT_RESIZE_METHODS, fused=True):
    """The full SSD training augmentation: distort, expand, crop, flip, resize.

    Args:
        image: float32 (or uint8) ``(H, W, 3)`` RGB in ``[0, 255]``.
        boxes: float32 ``(m, 4)`` normalised corners; ``m`` may be 0.
        labels: int32 ``(m,)``.
        seed: ``(2,)`` int seed.
        size: model input ``(height, width)`` as Python ints.
        mean: RGB canvas fill in 0-255.
        photometric: apply :func:`photometric_distort`.
        expand_max_ratio, expand_probability: see :func:`expand`.
        min_ious, max_trials: see :func:`min_iou_random_crop`.
        crop_scale, crop_aspect_ratio: ``(min, max)`` patch side fraction and
            ``w / h`` of :func:`min_iou_random_crop`.
        flip_probability: see :func:`random_flip`.
        resize_methods: interpolations drawn by :func:`random_resize`.
        fused: compose expand + crop + resize as index arithmetic (default;
            see the module docstring).  ``False`` runs the five public ops one
            after another, materialising the expanded canvas.

    Returns:
        ``(image float32 (height, width, 3) in [0, 255], boxes (k, 4), labels (k,))``.
    """
    image = tf.cast(image, tf.float32)
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), [-1, 4])
    labels = tf.convert_to_tensor(labels, tf.int32)
    size = (int(size[0]), int(size[1]))
    colour_seed, expand_seed, crop_seed, flip_seed, resize_seed = _split(seed, 5)
    if not fused:
        if photometric:
            image = photometric_distort(image, colour_seed)
        image, boxes, labels = expand(image, boxes, labels, expand_seed, mean,
                                      expand_max_ratio, expand_probability)
        image, boxes, labels = min_iou_random_crop(image, boxes, labels, crop_seed, min_ious,
                                                   max_trials, *crop_scale, *crop_aspect_ratio)
        image, boxes = random_flip(image, boxes, flip_seed, flip_probability)
        return random_resize(image, size, resize_seed, resize_methods), boxes, labels

    height, width = _image_size(image)
    canvas_h, canvas_w, top, left = _sample_expand(
        expand_seed, height, width, expand_max_ratio, expand_probability)
    offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
    scale = tf.cast(tf.stack([width, height, width, height]), tf.float32)
    boxes_canvas = boxes * scale + offset  # pixels of the (virtual) canvas
    window, keep = _sample_crop_window(crop_seed, boxes_canvas, canvas_h, canvas_w, min_ious,
                                       max_trials, *crop_scale, *crop_aspect_ratio)
    wx0, wy0, wx1, wy1 = tf.unstack(window)

    # The part of the original image inside the window, in canvas pixels.
    sx0 = tf.maximum(wx0, left)
    sy0 = tf.maximum(wy0, top)
    sx1 = tf.minimum(wx1, left + width)
    sy1 = tf.minimum(wy1, top + height)
    visible = (sx1 > sx0) & (sy1 > sy0)  # False only for an "any" patch of pure canvas

    # Its place in the output, snapped to whole output pixels (at least one).
    out_h, out_w = size
    fy = out_h / tf.cast(wy1 - wy0, tf.float32)
    fx = out_w / tf.cast(wx1 - wx0, tf.float32)

    def _place(s0, s1, w0, f, limit):
        o0 = tf.cast(tf.round(tf.cast(s0 - w0, tf.float32) * f), tf.int32)
        o1 = tf.cast(tf.round(tf.cast(s1 - w0, tf.float32) * f), tf.int32)
        o0 = tf.clip_by_value(o0, 0, limit - 1)
        return o0, tf.clip_by_value(o1 - o0, 1, limit - o0)

    oy0, place_h = _place(sy0, sy1, wy0, fy, out_h)
    ox0, place_w = _place(sx0, sx1, wx0, fx, out_w)

    # Slice the source (at least 1x1 so an invisible part still has a shape).
    iy0 = tf.clip_by_value(sy0 - top, 0, height - 1)
    ix0 = tf.clip_by_value(sx0 - left, 0, width - 1)
    iy1 = tf.maximum(sy1 - top, iy0 + 1)
    ix1 = tf.maximum(sx1 - left, ix0 + 1)
    part = image[iy0:iy1, ix0:ix1]
    method = tf.random.stateless_uniform([], resize_seed, 0, len(resize_methods), dtype=tf.int32)
    part = _resize_with(part, tf.stack([place_h, place_w]), method, resize_methods)
    part = tf.clip_by_value(part, 0.0, 255.0)
    if photometric:
        part = photometric_distort(part, colour_seed)
    # Most draws (no expand, or a patch inside the image) fill the output: skip the padding.
    fills_output = visible & (place_h == out_h) & (place_w == out_w)
    out = tf.cond(
        fills_output, lambda: part,
        lambda: _place_on_mean(part, visible, mean, oy0, ox0, out_h, out_w))
    out = tf.ensure_shape(out, [out_h, out_w, 3])

    # Boxes: keep by centre, clip to the visible part, map onto its placement.
    kept = tf.boolean_mask(boxes_canvas, keep)
    labels = tf.boolean_mask(labels, keep)
    src_lo = tf.cast(tf.stack([sx0, sy0, sx0, sy0]), tf.float32)
    src_hi = tf.cast(tf.stack([sx1, sy1, sx1, sy1]), tf.float32)
    src_size = tf.maximum(src_hi - src_lo, 1.0)
    dst_lo = tf.cast(tf.stack([ox0, oy0, ox0, oy0]), tf.float32)
    dst_size = tf.cast(tf.stack([place_w, place_h, place_w, place_h]), tf.float32)
    out_size = tf.constant([out_w, out_h, out_w, out_h], tf.float32)
    kept = tf.clip_by_value(kept, src_lo, src_hi)
    boxes = (dst_lo + (kept - src_lo) / src_size * dst_size) / out_size

    out, boxes = random_flip(out, boxes, flip_seed, flip_probability)
    return out, boxes, labels

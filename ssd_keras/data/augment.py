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
3. :func:`min_iou_random_crop` -- Caffe's batch sampler: seven samplers (whole
   image, min IoU 0.1/0.3/0.5/0.7/0.9, any patch) each run on its own with up to
   50 trials (all drawn at once), one success picked uniformly.
4. :func:`random_flip` -- horizontal.
5. :func:`random_resize` -- to the model size with a random interpolation.

:func:`ssd_augment` composes 1-5 without ever materialising the expanded
canvas: the crop window is sampled in canvas coordinates, only the part of the
original image inside it is sliced and resized straight to its place in the
output, and the rest of the output is filled with the mean colour.  Photometric
distortion is pixel-wise, so it commutes with expand/crop/flip; it is applied
to that image part only (never the mean fill), before the resize (Caffe's
order) when the part has fewer pixels than its place in the output, after it
otherwise.  The only differences from running the five ops one after another
(``ssd_augment(..., fused=False)``) are sub-pixel: the image part is placed at
whole output pixels (boxes follow that placement exactly) and, in the second
case, the colour distortion sees resampled rather than source pixels.

Remaining differences from Caffe SSD (weiliu89/caffe ``ssd``, ``ssd_pascal.py``)
------------------------------------------------------------------------------
Same algorithm, parameters and probabilities for every step: distortion
(``im_transforms.cpp`` ``ApplyDistort``), expansion (``ExpandImage``), the batch
sampler (``sampler.cpp``), the centre emit rule, mirror and the random-method
warp to the model size.  What still differs, each with its expected effect:

- **Order / where resampling happens** (fused path, the default): Caffe distorts
  the full-size source, expands, crops, then resizes the crop.  Here, when the
  visible source part has more pixels than its place in the output (whole or
  expanded images, large patches), it is resized first and distorted at model
  size.  Colour ops are pixel-wise, so only resampling-vs-distortion order
  differs (sub-level); the unfused path keeps Caffe's order.
- **8-bit arithmetic**: Caffe rounds to uint8 after every colour step and runs
  saturation and hue through OpenCV's 8-bit HSV (2-degree hue steps); here all
  steps are float32, clipped to ``[0, 255]`` like Caffe's saturating casts.
- **JPEG re-encoding**: Caffe re-encodes the image as JPEG after distortion,
  after expansion and after cropping (``EncodeCVMatToDatum``); here it is
  decoded once.  (Caffe's extra compression is a mild blur; no expected effect.)
- **Pixel rounding of the patch**: both crop ``int(xmin * W)`` .. ``+ int(w * W)``,
  but Caffe maps the boxes onto the unrounded patch (up to one source pixel off
  its own pixels); here the boxes follow the cropped pixels exactly.  In the
  fused path the image part is also placed at whole output pixels.
- **Interpolation**: see :func:`random_resize` -- linear, nearest and (when
  shrinking) area are OpenCV's; cubic uses TF's kernel; Lanczos-4 is not drawn
  by default (cost), so the other four each get p = 1/4 instead of 1/5.
- **Hue**: Caffe's clamp at 0 and wrap past 360 degrees are reproduced; its
  8-bit rounding of the hue is not (at most about 2 levels per channel).
- **Random numbers**: stateless counter-based (``tf.random.stateless_*``), so the
  draws are Caffe's distributions, not its RNG stream.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ssd_keras.boxes import pairwise_iou

#: Caffe SSD's seven samplers (``ssd_pascal.py``), each run on its own: ``None`` =
#: the whole image, a float = a patch whose IoU with some ground-truth box is at
#: least that, ``"any"`` = any patch (``max_jaccard_overlap 1.0``; needs a box).
DEFAULT_MIN_IOUS = (None, 0.1, 0.3, 0.5, 0.7, 0.9, "any")
#: Interpolations drawn by :func:`random_resize` (Caffe: linear, area, nearest,
#: cubic, lanczos4).  ``"lanczos5"`` may be added; it costs 5-8x bilinear.
DEFAULT_RESIZE_METHODS = ("bilinear", "area", "nearest", "bicubic")
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


def _resize_nearest_opencv(image, size):
    """OpenCV's ``INTER_NEAREST``: output pixel ``i`` takes source ``floor(i * in / out)``.

    (TF's ``nearest`` samples at half-pixel centres instead, a shift of up to
    one source pixel.)  Two gathers, cheaper than ``tf.image.resize``.
    """
    def indices(out, full):
        # OpenCV's resizeNN: ifx = 1 / (out / in) in double, then floor(i * ifx).
        step = 1.0 / (tf.cast(out, tf.float64) / tf.cast(full, tf.float64))
        index = tf.cast(tf.floor(tf.cast(tf.range(out), tf.float64) * step), tf.int32)
        return tf.minimum(index, full - 1)

    height, width = _image_size(image)
    rows = tf.gather(image, indices(size[0], height), axis=0)
    return tf.gather(rows, indices(size[1], width), axis=1)


def _resize_with(image, size, method_index, methods):
    """Resize to ``size`` with ``methods[method_index]`` (a graph-time switch).

    ``"nearest"`` is OpenCV's rule (:func:`_resize_nearest_opencv`); the other
    names go to ``tf.image.resize``.
    """
    size = tf.convert_to_tensor(size, tf.int32)

    def resize_one(method):
        if method == "nearest":
            return _resize_nearest_opencv(image, size)
        return tf.image.resize(image, size, method=method)

    branches = [(lambda m=m: resize_one(m)) for m in methods]
    if len(branches) == 1:
        return branches[0]()
    return tf.switch_case(method_index, branches)


def _flip_boxes(boxes):
    xmin, ymin, xmax, ymax = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([1.0 - xmax, ymin, 1.0 - xmin, ymax], axis=-1)


def _parse_min_ious(min_ious):
    """Sampler modes -> Python lists ``(whole, lower, upper)``, one entry per sampler.

    ``None`` is Caffe's unconstrained default ``Sampler`` (scale 1, aspect 1:
    the whole image), a float ``t`` is ``min_jaccard_overlap: t`` and ``"any"``
    is ``max_jaccard_overlap: 1.0``.
    """
    whole, lower, upper = [], [], []
    for mode in min_ious:
        if mode is None:
            whole.append(True)
            lower.append(-math.inf)
        elif isinstance(mode, str) and mode == "any":
            whole.append(False)
            lower.append(-math.inf)
        elif isinstance(mode, (int, float)) and not isinstance(mode, bool) and 0 <= mode <= 1:
            whole.append(False)
            lower.append(float(mode))
        else:
            raise ValueError(f"min_ious: {mode!r} is not None, 'any' or an IoU in [0, 1]")
        upper.append(1.0)
    if not whole:
        raise ValueError("min_ious must name at least one sampler mode")
    return whole, lower, upper


# ----------------------------------------------------------------------------- 1. colour


def _adjust_saturation_hue_caffe(image, saturation, delta):
    """Caffe's ``AdjustSaturation`` then ``AdjustHue`` on float RGB ``(H, W, 3)``.

    Any value scale (``[0, 1]`` or ``[0, 255]``): H and S are scale-invariant
    and V is carried through linearly.

    ``S * saturation`` clipped to 1 (Caffe's saturating ``convertTo`` on the
    8-bit S channel), then hue + ``delta`` degrees.  Caffe
    adds the hue delta to OpenCV's 8-bit hue channel (0-180), also saturating:
    a hue pushed past the top wraps round (OpenCV's HSV->BGR takes it modulo 360
    degrees) but one pushed below 0 stops at 0 (red), where TF's ``adjust_hue``
    would wrap.  Hues in ``[359, 360)`` count as 0 for that, since OpenCV rounds
    them to 8-bit hue 180 = 0; its other 2-degree rounding is not reproduced.
    A positive delta therefore runs TF's fused ``adjust_saturation`` and
    ``adjust_hue``; a negative one a single HSV round trip doing both (Caffe
    converts back to 8-bit RGB between the two steps; in float that round trip
    is the identity).
    """
    def wrap_round():  # delta >= 0: exactly TF's fused kernels, the cheaper path
        saturated = tf.cond(tf.equal(saturation, 1.0), lambda: image,
                            lambda: tf.image.adjust_saturation(image, saturation))
        return tf.image.adjust_hue(saturated, delta / 360.0)

    def stop_at_zero():  # delta < 0: one HSV round trip
        hue, sat, value = tf.unstack(tf.image.rgb_to_hsv(image), 3, axis=-1)
        sat = tf.minimum(sat * saturation, 1.0)
        # TF's hue is a fraction of the circle; [359, 360) degrees count as 0.
        hue = tf.where(hue >= 359.0 / 360.0, 0.0, tf.maximum(hue + delta / 360.0, 0.0))
        return tf.image.hsv_to_rgb(tf.stack([hue, sat, value], axis=-1))

    return tf.cond(delta >= 0, wrap_round, stop_at_zero)


def photometric_distort(image, seed, brightness_delta=32.0, contrast_range=(0.5, 1.5),
                        saturation_range=(0.5, 1.5), hue_delta=36.0, probability=0.5,
                        channel_swap_probability=0.0):
    """Caffe SSD's colour distortion of an RGB ``(H, W, 3)`` float image in ``[0, 255]``.

    Each step is applied independently with ``probability``:

    - brightness: ``x + U(-brightness_delta, brightness_delta)``;
    - contrast: ``x * U(*contrast_range)`` (Caffe's ``convertTo(alpha)``, i.e. a
      plain scale, not TF's scale-about-the-mean ``adjust_contrast``);
    - saturation: HSV ``S * U(*saturation_range)``;
    - hue: HSV ``H + U(-hue_delta, hue_delta)`` **degrees**.  Caffe's
      ``hue_delta: 18`` is in OpenCV's 8-bit hue units (0-180, ``caffe.proto``
      "within [0, 180]"), i.e. 36 degrees, the default here.  As in Caffe a hue
      pushed below 0 stops at 0 (red) while one pushed past 360 wraps round
      (see :func:`_adjust_saturation_hue_caffe`);
    - optional random channel permutation (Caffe's ``random_order_prob``; off by default).

    Contrast runs before or after the two HSV steps, chosen with p = 0.5 (Caffe's
    ``ApplyDistort``: brightness, contrast, saturation, hue or brightness,
    saturation, hue, contrast; ``random_order_prob 0`` in ``ssd_pascal.py``).
    Values are clipped to ``[0, 255]`` after each step, as Caffe's uint8 images
    are.  Returns float32 ``(H, W, 3)``; boxes are unaffected.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    u = tf.random.stateless_uniform([11], seed)
    apply = u[:4] < probability  # brightness, contrast, saturation, hue
    delta = (2.0 * u[5] - 1.0) * brightness_delta
    alpha = contrast_range[0] + u[6] * (contrast_range[1] - contrast_range[0])
    saturation = tf.where(
        apply[2], saturation_range[0] + u[7] * (saturation_range[1] - saturation_range[0]), 1.0)
    hue = (2.0 * u[8] - 1.0) * hue_delta  # degrees
    contrast_first = u[9] < 0.5

    # Each step runs only when drawn (tf.cond): this is the costliest part of
    # the chain, and a skipped step is exactly the identity on [0, 255] values.
    def contrast(before):
        return tf.cond(apply[1] & tf.equal(contrast_first, before),
                       lambda: tf.clip_by_value(image * alpha, 0.0, 255.0), lambda: image)

    image = tf.cond(apply[0], lambda: tf.clip_by_value(image + delta, 0.0, 255.0),
                    lambda: image)
    image = contrast(before=True)
    # Saturation and hue together (adjacent in both of Caffe's orders).  The HSV
    # ops are scale-invariant in H and S and linear in V, so they run on 0-255
    # values directly (equal to scaling to [0, 1] to 1e-4).
    image = tf.cond(
        apply[3], lambda: _adjust_saturation_hue_caffe(image, saturation, hue),
        lambda: tf.cond(apply[2], lambda: tf.image.adjust_saturation(image, saturation),
                        lambda: image))
    image = contrast(before=False)
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
    # Caffe's ExpandImage: offsets floor(U(0, canvas - side)).
    top = tf.cast(u[2] * tf.cast(canvas_h - height, tf.float32), tf.int32)
    left = tf.cast(u[3] * tf.cast(canvas_w - width, tf.float32), tf.int32)
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


def _sample_patch(seed, boxes, min_ious, max_trials, min_scale, max_scale, min_aspect_ratio,
                  max_aspect_ratio):
    """Caffe's ``GenerateBatchSamples`` and the uniform pick among its samples.

    Every sampler of ``min_ious`` runs on its own (``sampler.cpp``
    ``GenerateSamples`` with ``max_sample 1``): ``max_trials`` patches are drawn
    (``SampleBBox``) and the first one meeting the sampler's constraint is its
    sample; a ``None`` sampler always yields the whole image.  All samplers x
    trials are drawn at once.  One sample is then picked uniformly among the
    samplers that found one (``annotated_data_layer.cpp``); when none did, the
    whole image.

    A trial, in coordinates normalised to the sampled image: scale
    ``s ~ U(min_scale, max_scale)``, aspect ``a ~ U(min_aspect_ratio,
    max_aspect_ratio)`` clamped to ``[s**2, 1 / s**2]``, width ``s * sqrt(a)``,
    height ``s / sqrt(a)``, offsets ``U(0, 1 - side)``.  The constraint
    (``SatisfySampleConstraint``) is that the IoU (``JaccardOverlap``, no +1
    term) with **some** box lies in ``[lower, upper]``; with no boxes only
    ``None`` samplers succeed.

    Args:
        seed: ``(2,)`` int seed.
        boxes: float32 ``(m, 4)`` corners normalised to the sampled image.

    Returns:
        ``patch`` float32 ``(4,)`` normalised ``[xmin, ymin, xmax, ymax]``,
        ``chosen`` int32 index into ``min_ious`` of the sampler picked (-1 when
        none succeeded) and ``found`` bool ``(len(min_ious),)``.
    """
    whole, lower, upper = _parse_min_ious(min_ious)
    num = len(whole)
    trial_seed, pick_seed = _split(seed, 2)
    u = tf.random.stateless_uniform([4, num, max_trials], trial_seed)
    scale = min_scale + u[0] * (max_scale - min_scale)
    aspect = min_aspect_ratio + u[1] * (max_aspect_ratio - min_aspect_ratio)
    aspect = tf.minimum(tf.maximum(aspect, tf.square(scale)), 1.0 / tf.square(scale))
    root = tf.sqrt(aspect)
    patch_w = scale * root
    patch_h = scale / root
    x0 = u[2] * (1.0 - patch_w)
    y0 = u[3] * (1.0 - patch_h)
    patches = tf.stack([x0, y0, x0 + patch_w, y0 + patch_h], axis=-1)  # (num, trials, 4)
    iou = pairwise_iou(tf.reshape(patches, [-1, 4]), boxes)
    iou = tf.reshape(iou, [num, max_trials, -1])
    lower = tf.constant(lower, tf.float32)[:, None, None]
    upper = tf.constant(upper, tf.float32)[:, None, None]
    whole = tf.constant(whole)
    ok = tf.reduce_any((iou >= lower) & (iou <= upper), axis=-1) | whole[:, None]
    found = tf.reduce_any(ok, axis=1)
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    unit = tf.constant([0.0, 0.0, 1.0, 1.0])
    samples = tf.where(whole[:, None], unit, tf.gather(patches, first, batch_dims=1))
    # caffe_rng_rand() % count: a uniform pick among the successes, in sampler order.
    found_int = tf.cast(found, tf.int32)
    count = tf.reduce_sum(found_int)
    pick = tf.random.stateless_uniform([], pick_seed, 0, tf.maximum(count, 1), dtype=tf.int32)
    chosen = tf.argmax(tf.cast(found & (tf.cumsum(found_int) == pick + 1), tf.int32),
                       output_type=tf.int32)
    chosen = tf.where(count > 0, chosen, -1)
    patch = tf.where(count > 0, samples[tf.maximum(chosen, 0)], unit)
    return patch, chosen, found


def _sample_crop_window(seed, boxes_px, height, width, min_ious, max_trials, min_scale,
                        max_scale, min_aspect_ratio, max_aspect_ratio):
    """Caffe's patch (:func:`_sample_patch`) on an ``(height, width)`` image, in whole pixels.

    The normalised patch maps to pixels as Caffe's ``DataTransformer::CropImage``
    does: ``x0 = int(xmin * W)``, ``w = int((xmax - xmin) * W)`` (truncation; at
    least one pixel), likewise for y.  Unlike Caffe, which crops those pixels
    but projects the boxes onto the unrounded patch (up to a pixel apart), the
    boxes here follow the pixel window exactly.

    Args:
        boxes_px: float32 ``(m, 4)`` corners in pixels of the image.

    Returns:
        ``window`` int32 ``[x0, y0, x1, y1]`` (pixels, end-exclusive) and
        ``keep`` bool ``(m,)``: the boxes whose centre lies inside it, edges
        included (Caffe's ``MeetEmitConstraint`` with ``emit_type CENTER``).
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    size = tf.stack([w, h, w, h])
    patch, _, _ = _sample_patch(seed, boxes_px / size, min_ious, max_trials, min_scale,
                                max_scale, min_aspect_ratio, max_aspect_ratio)
    px = patch * size
    x0 = tf.clip_by_value(tf.floor(px[0]), 0.0, w - 1.0)
    y0 = tf.clip_by_value(tf.floor(px[1]), 0.0, h - 1.0)
    x1 = x0 + tf.clip_by_value(tf.floor(px[2] - px[0]), 1.0, w - x0)
    y1 = y0 + tf.clip_by_value(tf.floor(px[3] - px[1]), 1.0, h - y0)
    centre_x = (boxes_px[:, 0] + boxes_px[:, 2]) * 0.5
    centre_y = (boxes_px[:, 1] + boxes_px[:, 3]) * 0.5
    keep = (centre_x >= x0) & (centre_x <= x1) & (centre_y >= y0) & (centre_y <= y1)
    return tf.cast(tf.stack([x0, y0, x1, y1]), tf.int32), keep


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
    """Caffe SSD's batch sampler: one patch picked among seven independent samplers.

    Each entry of ``min_ious`` is a sampler run on its own, as in Caffe's
    ``ssd_pascal.py``: ``None`` = the whole image (always succeeds); a float
    ``t`` = up to ``max_trials`` random patches, the first whose IoU with
    **some** ground-truth box is ``>= t``; ``"any"`` = ``max_jaccard_overlap
    1.0``, i.e. the first patch when the image has at least one box.  One
    sample is then chosen uniformly among the samplers that succeeded; a sampler
    whose trials all fail drops out (it does not turn into "keep the whole
    image").  Without boxes only ``None`` succeeds, so the image is kept whole.

    A patch (``SampleBBox``): scale ``s ~ U(min_scale, max_scale)`` and aspect
    ``a ~ U(min_aspect_ratio, max_aspect_ratio)`` clamped to ``[s**2, 1/s**2]``;
    width ``s * sqrt(a)`` and height ``s / sqrt(a)`` as **fractions of the
    image's sides** (so ``a`` is relative to the image's own aspect, and no
    patch is rejected for its shape); offsets uniform.  It is snapped to whole
    pixels by truncation as Caffe's ``CropImage`` does (see
    :func:`_sample_crop_window`).  Boxes whose centre lies in the patch (edges
    included) are kept, clipped to it and re-normalised; the others are dropped,
    so a patch may keep no box at all (as in Caffe).

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
    """Resize to ``size = (height, width)`` with an interpolation drawn uniformly from ``methods``.

    Caffe SSD draws among OpenCV's ``INTER_LINEAR``, ``INTER_AREA``,
    ``INTER_NEAREST``, ``INTER_CUBIC`` and ``INTER_LANCZOS4``
    (``im_transforms.cpp`` ``ApplyResize``).  Measured against ``cv2.resize`` on
    a photo-like 8-bit image (mean / max absolute difference in 0-255 levels,
    270x200 -> 300x300 up and 500x375 -> 300x300 down):

    - ``"bilinear"`` = ``INTER_LINEAR`` exactly (0.27 / 1: only rounding; both use
      half-pixel centres and no antialiasing);
    - ``"area"`` = ``INTER_AREA`` exactly when shrinking (0.25 / 0); when
      enlarging it is close (1.1 / 68 at a few edges: TF weighs pixel overlap,
      OpenCV a clipped linear ramp);
    - ``"nearest"`` = ``INTER_NEAREST`` exactly (OpenCV's ``floor(i * in / out)``
      index rule, :func:`_resize_nearest_opencv`);
    - ``"bicubic"`` approximates ``INTER_CUBIC`` (0.7 / 5): TF's Keys kernel has
      ``a = -0.5``, OpenCV's ``a = -0.75``;
    - ``INTER_LANCZOS4`` (8x8 taps) is left out of the default draw: TF's
      ``"lanczos5"`` (0.55 / 4) or ``"lanczos3"`` (0.7 / 5) come close but cost
      5-8x a bilinear resize on a CPU.  Add one to ``methods`` for the full
      five-way draw; without it each of the four is drawn with p = 1/4, not 1/5.

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
        min_ious, max_trials: the samplers of :func:`min_iou_random_crop`.
        crop_scale, crop_aspect_ratio: ``(min, max)`` patch scale and aspect
            (relative to the expanded image's sides) of
            :func:`min_iou_random_crop`.
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

    def resize_part(pixels):
        pixels = _resize_with(pixels, tf.stack([place_h, place_w]), method, resize_methods)
        return tf.clip_by_value(pixels, 0.0, 255.0)

    if photometric:
        # Distortion is pixel-wise: on the source part it is exactly Caffe's order
        # (distort, then crop and resize).  Run it at whichever resolution has
        # fewer pixels, the source part or its place in the output.
        source_pixels = (iy1 - iy0) * (ix1 - ix0)
        part = tf.cond(source_pixels <= place_h * place_w,
                       lambda: resize_part(photometric_distort(part, colour_seed)),
                       lambda: photometric_distort(resize_part(part), colour_seed))
    else:
        part = resize_part(part)
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

"""Crop training: small windows sampled around objects, as a ``tf.data`` pipeline.

When every object is small and most of an image is background (the synthetic
digits: 10-28 px digits on 512x512 images), training a fully convolutional
detector on whole images wastes nearly all of its compute on easy negatives.
This module samples ``S x S`` windows instead -- most of them containing an
object -- and encodes their targets with the config's family encoder at
``(S, S)`` (``config.family.target_encoder(config, (S, S))``: any family).  With pixel-sized anchors (:class:`~ssd_keras.config.MultiscaleAnchors`)
the same weights then run on the whole image (``config.anchors(image_size=(512, 512))``
gives the same pixel anchors on a larger grid).

Pipeline (:func:`crop_dataset`)
-------------------------------
1. :class:`ImageBank` decodes every image once into memory: uint8
   ``(n, H, W, 3)`` (800 digits images: 630 MB) plus padded pixel boxes.
2. Example ``k`` draws, from the stateless seed ``(seed, k)``: an image; with
   probability ``object_probability`` one of its boxes and a window that holds
   that box entirely (uniform among such windows), else a uniform window; an
   optional scale (window side ``S / scale``, resized to ``S``).
3. Boxes in the window (:func:`crop_targets`): a box whose visible fraction
   (clipped area / area) is at least ``min_visible`` is a positive, with its
   clipped box; a box cut more than that by the border is *ignored*: its
   whole extent and its visible part go to the encoder with label ``-1`` (the
   seam's ignore convention; SSD: anchors with IoU >=
   ``head.ignore_iou_threshold`` with either are neither positive nor
   negative; CenterNet: no heatmap loss inside it), so half a digit is never
   taught as background nor as a digit with a wrong box.
4. Light photometric augmentation (channel permutation, inversion,
   brightness/contrast); no flips (a mirrored 2 is a 5).
5. The family's target encoder at ``(S, S)``, batch, prefetch.

Every random draw is a ``tf.random.stateless_*`` op keyed by ``(seed, k)``,
so the stream is identical for equal seeds whatever ``num_parallel_calls``.

Boundaries: crops are float32 RGB in ``[0, 255]``; boxes inside are pixel
corners ``[xmin, ymin, xmax, ymax]`` (records' COCO/VOC pixels are converted
through :func:`ssd_keras.data.records.normalized_boxes`), targets are the
family's (SSD: :func:`ssd_keras.families.ssd.matching.encode_targets`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ssd_keras.data.records import Record, normalized_boxes

_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """How crops are sampled and augmented.

    Attributes:
        crop_size: side ``S`` of the square crops fed to the model (pixels).
        object_probability: chance that a window is placed around a random
            object of the image (else uniform over the image).
        min_visible: a box with at least this fraction of its area inside the
            window is a positive (with its clipped box); a box cut more is
            ignored (label -1; how close to it counts is the family's
            setting, e.g. SSD's ``head.ignore_iou_threshold``).
        scale_range: ``(lo, hi)`` zoom factor drawn log-uniformly; a window of
            side ``S / scale`` is resized to ``S``.  ``(1, 1)`` = no resizing.
        permute_channels: random RGB channel order.
        invert_probability: chance of ``255 - image``.
        brightness: max absolute brightness shift (grey levels).
        contrast: max relative contrast change (``1 +- contrast``).
    """

    crop_size: int = 128
    object_probability: float = 0.85
    min_visible: float = 0.9
    scale_range: Tuple[float, float] = (1.0, 1.0)
    permute_channels: bool = True
    invert_probability: float = 0.5
    brightness: float = 16.0
    contrast: float = 0.2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ImageBank:
    """Decoded images and their boxes, in memory.

    Attributes:
        images: uint8 ``(n, H, W, 3)`` RGB, images padded with zeros to the
            largest height/width.
        sizes: int32 ``(n, 2)`` true ``(height, width)`` of each image.
        boxes: float32 ``(n, M, 4)`` pixel corners ``[xmin, ymin, xmax, ymax]``
            (0-based continuous), zero padded to the largest count ``M``.
        labels: int32 ``(n, M)`` labels ``1..K`` (0 = padding).
        counts: int32 ``(n,)`` boxes per image.
    """

    images: np.ndarray
    sizes: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    counts: np.ndarray

    def __len__(self):
        return len(self.images)


def _read_rgb(path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"could not read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_image_bank(records: Sequence[Record]) -> ImageBank:
    """Decode every record's image once (uint8) and pad the boxes (pixels, 0-based).

    Boxes go through :func:`normalized_boxes` then back to pixels of the decoded
    image, so VOC 1-based and COCO 0-based records give the same convention.
    """
    if not records:
        raise ValueError("load_image_bank: no records")
    decoded = [_read_rgb(r.image_path) for r in records]
    max_h = max(im.shape[0] for im in decoded)
    max_w = max(im.shape[1] for im in decoded)
    max_m = max(1, max(r.num_objects for r in records))
    n = len(records)
    images = np.zeros((n, max_h, max_w, 3), np.uint8)
    sizes = np.zeros((n, 2), np.int32)
    boxes = np.zeros((n, max_m, 4), np.float32)
    labels = np.zeros((n, max_m), np.int32)
    counts = np.zeros((n,), np.int32)
    for i, (record, image) in enumerate(zip(records, decoded)):
        h, w = image.shape[:2]
        images[i, :h, :w] = image
        sizes[i] = (h, w)
        m = record.num_objects
        counts[i] = m
        if m:
            boxes[i, :m] = normalized_boxes(record) * np.array([w, h, w, h], np.float32)
            labels[i, :m] = record.labels
    return ImageBank(images, sizes, boxes, labels, counts)


# ----------------------------------------------------------------------------- sampling


def _uniform(seed, lo=0.0, hi=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, lo, hi, tf.float32)


def _window_start(seed, lo, hi):
    """Uniform integer in ``[lo, hi]`` (int32 scalars, ``hi >= lo``)."""
    span = tf.cast(hi - lo + 1, tf.float32)
    offset = tf.cast(tf.floor(_uniform(seed) * span), tf.int32)
    return lo + tf.minimum(offset, hi - lo)


def sample_window(seed, size, box, has_box, window):
    """Top-left ``(y0, x0)`` int32 of a ``window`` x ``window`` crop of an image of ``size``.

    Args:
        seed: ``(2,)`` stateless seed.
        size: int32 ``(2,)`` image ``(height, width)``.
        box: float32 ``(4,)`` pixel corners of the object to enclose.
        has_box: bool scalar; False gives a uniform window.
        window: int32 scalar window side.

    The window encloses ``box`` when it can (uniform among such windows); a
    window larger than the image starts at 0 (the rest is zero padding).
    """
    sy, sx = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    h, w = size[0], size[1]
    max_y = tf.maximum(h - window, 0)
    max_x = tf.maximum(w - window, 0)
    lo_x = tf.clip_by_value(tf.cast(tf.math.ceil(box[2]), tf.int32) - window, 0, max_x)
    hi_x = tf.clip_by_value(tf.cast(tf.floor(box[0]), tf.int32), 0, max_x)
    lo_y = tf.clip_by_value(tf.cast(tf.math.ceil(box[3]), tf.int32) - window, 0, max_y)
    hi_y = tf.clip_by_value(tf.cast(tf.floor(box[1]), tf.int32), 0, max_y)
    # an object wider than the window: any window overlapping it
    lo_x, hi_x = tf.minimum(lo_x, hi_x), tf.maximum(lo_x, hi_x)
    lo_y, hi_y = tf.minimum(lo_y, hi_y), tf.maximum(lo_y, hi_y)
    lo_x = tf.where(has_box, lo_x, 0)
    hi_x = tf.where(has_box, hi_x, max_x)
    lo_y = tf.where(has_box, lo_y, 0)
    hi_y = tf.where(has_box, hi_y, max_y)
    return _window_start(sy, lo_y, hi_y), _window_start(sx, lo_x, hi_x)


def crop_targets(boxes, labels, valid, origin, window, min_visible):
    """Split an image's pixel boxes into positives and cut boxes for a window.

    Args:
        boxes: float32 ``(M, 4)`` pixel corners in the image.
        labels: int32 ``(M,)``.
        valid: bool ``(M,)`` (False for padding).
        origin: float32 ``(2,)`` window top-left ``(x0, y0)`` in pixels.
        window: float32 scalar window side in pixels.
        min_visible: visible-area fraction for a positive.

    Returns:
        ``(pos_boxes (p, 4), pos_labels (p,), cut_boxes (c, 4), cut_visible (c, 4))``:
        normalised corners relative to the window; positives are clipped to
        it; cut boxes are whole (may extend past ``[0, 1]``) with their
        clipped visible parts.
    """
    shift = tf.concat([origin, origin], 0)
    local = (boxes - shift) / window
    clipped = tf.clip_by_value(local, 0.0, 1.0)
    area = (local[:, 2] - local[:, 0]) * (local[:, 3] - local[:, 1])
    visible_area = tf.maximum(clipped[:, 2] - clipped[:, 0], 0.0) * tf.maximum(
        clipped[:, 3] - clipped[:, 1], 0.0)
    visible = tf.math.divide_no_nan(visible_area, area)
    positive = valid & (visible >= min_visible) & (area > 0)
    cut = valid & (visible > 0) & ~positive
    return (tf.boolean_mask(clipped, positive), tf.boolean_mask(labels, positive),
            tf.boolean_mask(local, cut), tf.boolean_mask(clipped, cut))


def photometric(image, seed, spec: CropSpec):
    """Channel permutation, inversion, brightness, contrast (float32 ``[0, 255]``)."""
    s = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if spec.permute_channels:
        perm = tf.constant(_PERMUTATIONS, tf.int32)[
            tf.random.stateless_uniform([], s[0], 0, len(_PERMUTATIONS), tf.int32)]
        image = tf.gather(image, perm, axis=-1)
    if spec.invert_probability > 0:
        image = tf.where(_uniform(s[1]) < spec.invert_probability, 255.0 - image, image)
    if spec.contrast > 0:
        factor = _uniform(s[2], 1.0 - spec.contrast, 1.0 + spec.contrast)
        mean = tf.reduce_mean(image)
        image = (image - mean) * factor + mean
    if spec.brightness > 0:
        image = image + _uniform(s[3], -spec.brightness, spec.brightness)
    return tf.clip_by_value(image, 0.0, 255.0)


def make_crop_sampler(bank: ImageBank, config, spec: CropSpec = CropSpec(), seed: int = 0,
                      augment: bool = True):
    """``fn(index) -> (crop (S, S, 3) float32, targets)``: the family's targets at ``(S, S)``.

    SSD: ``{"labels": (N,), "boxes": (N, 4)}`` with ``N = config.num_anchors((S, S))``.
    Deterministic in ``(seed, index)``.
    """
    size = int(spec.crop_size)
    encode = config.family.target_encoder(config, (size, size))
    largest_window = int(np.ceil(size / min(spec.scale_range))) + 1
    bank_images = bank.images
    short_y = max(largest_window - bank_images.shape[1], 0)
    short_x = max(largest_window - bank_images.shape[2], 0)
    if short_y or short_x:  # images smaller than a window: zero padding beyond them
        bank_images = np.pad(bank_images, [(0, 0), (0, short_y), (0, short_x), (0, 0)])
    images = tf.constant(bank_images)
    sizes = tf.constant(bank.sizes)
    boxes = tf.constant(bank.boxes)
    labels = tf.constant(bank.labels)
    counts = tf.constant(bank.counts)
    n_images = len(bank)
    max_boxes = bank.boxes.shape[1]
    log_lo, log_hi = np.log(spec.scale_range[0]), np.log(spec.scale_range[1])
    zoom = spec.scale_range != (1.0, 1.0)

    def sample(index):
        base = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        s = tf.unstack(tf.random.experimental.stateless_split(base, 6))
        i = tf.random.stateless_uniform([], s[0], 0, n_images, tf.int32)
        count = counts[i]
        has_box = (_uniform(s[1]) < spec.object_probability) & (count > 0)
        j = tf.random.stateless_uniform([], s[2], 0, tf.maximum(count, 1), tf.int32)
        if zoom:
            scale = tf.exp(_uniform(s[3], log_lo, log_hi))
            window = tf.cast(tf.round(size / scale), tf.int32)
        else:
            window = tf.constant(size, tf.int32)
        y0, x0 = sample_window(s[4], sizes[i], boxes[i, j], has_box, window)
        # slice the window straight out of the bank (no copy of the whole image)
        crop = tf.slice(images, tf.stack([i, y0, x0, 0]), tf.stack([1, window, window, 3]))[0]
        crop = tf.cast(crop, tf.float32)
        if zoom:
            crop = tf.image.resize(crop, (size, size), antialias=True)
        crop = tf.ensure_shape(crop, (size, size, 3))
        valid = tf.range(max_boxes) < count
        origin = tf.cast(tf.stack([x0, y0]), tf.float32)
        pos_boxes, pos_labels, cut_boxes, cut_visible = crop_targets(
            boxes[i], labels[i], valid, origin, tf.cast(window, tf.float32), spec.min_visible)
        ignored = tf.fill([2 * tf.shape(cut_boxes)[0]], -1)     # whole extents + visible parts
        targets = encode(tf.concat([pos_boxes, cut_boxes, cut_visible], 0),
                         tf.concat([tf.cast(pos_labels, tf.int32), ignored], 0))
        if augment:
            crop = photometric(crop, s[5], spec)
        return crop, targets

    return sample


def crop_dataset(bank: ImageBank, config, batch_size: int, spec: CropSpec = CropSpec(),
                 seed: int = 0, augment: bool = True, num_examples: Optional[int] = None,
                 num_parallel_calls=tf.data.AUTOTUNE, prefetch: int = 2) -> tf.data.Dataset:
    """Batched crops and targets from an :class:`ImageBank`.

    Args:
        bank: decoded images (:func:`load_image_bank`).
        config: the detector config; targets are its family's at ``(S, S)``.
        batch_size: crops per batch.
        spec: :class:`CropSpec`.
        seed: stream seed; example ``k`` depends only on ``(seed, k)``.
        augment: photometric augmentation.
        num_examples: stop after this many examples (default: endless).

    Returns:
        ``tf.data.Dataset`` of ``(crops (B, S, S, 3) float32 [0, 255], targets)``
        (SSD: ``{"labels": (B, N) int32, "boxes": (B, N, 4) float32}``).
    """
    sampler = make_crop_sampler(bank, config, spec, seed, augment)
    indices = tf.data.Dataset.range(num_examples) if num_examples is not None \
        else tf.data.Dataset.counter()
    ds = indices.map(sampler, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=num_examples is None)
    return ds.prefetch(prefetch)

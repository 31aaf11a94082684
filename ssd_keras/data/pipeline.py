"""The tf.data input pipeline: records -> decode -> augment -> resize -> encode -> batch.

Data flows one way (records in, model-ready batches out):

1. Records (:class:`~ssd_keras.data.records.Record`) become three flat tensors
   -- image paths ``(n,)``, normalised corner boxes ``(total, 4)`` and labels
   ``(total,)`` with row splits ``(n + 1,)`` -- and a dataset of record
   *indices*; each element is looked up inside the map function, so nothing
   per-record stays in Python.
2. Each image is read and decoded (``decode_jpeg`` for JPEGs, else
   ``decode_image``; RGB, 3 channels); a truncated or non-image file raises
   ``InvalidArgumentError`` naming the file (a graph-side check of the first
   and last bytes, no measurable cost).
3. Training: :func:`ssd_keras.data.augment.ssd_augment` (photometric, expand,
   min-IoU crop, flip, random-interpolation resize).  Otherwise a plain
   bilinear resize.
4. Targets: the family's encoder, ``config.family.target_encoder(config)``
   (SSD: anchor matching against ``config.anchors()``; CenterNet: heatmaps,
   sizes and offsets), graph ops only.
5. Batch, prefetch.

Images leave the pipeline as RGB float32 in ``[0, 255]`` because
:class:`~ssd_keras.models.base.DetectorModel` normalises its own input
(``InputScaling`` layer: mean/BGR for Caffe VGG, ``[-1, 1]`` for MobileNet).
:func:`preprocess_images` is the same transform as a function, for models
without that layer (pass ``preprocess=True``).

Determinism: with a ``seed``, the shuffle order and every element's
augmentation seed come from stateless streams keyed by ``seed``; each element
gets the seed ``(r, record index)`` where ``r`` is the element's draw from
``tf.data.Dataset.random(seed)`` (a new stream for every epoch and every new
iterator, the same streams for the same ``seed``).  Seeds are attached before
the parallel map, so any ``num_parallel_calls`` gives the same batches.
"""
from __future__ import annotations

import random
from typing import Callable, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from ssd_keras.boxes import validate_boxes
from ssd_keras.data.augment import resize, ssd_augment
from ssd_keras.data.check import JPEG_EOI_WINDOW
from ssd_keras.data.records import Record, normalized_boxes

AugmentFn = Callable  # (image, boxes, labels, seed) -> (image, boxes, labels)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"   # the last chunk: length 0, "IEND", its CRC


# ----------------------------------------------------------------------------- preprocessing


def preprocess_images(images, config):
    """Model-input normalisation of RGB float images in ``[0, 255]`` (any leading shape).

    The model's own :class:`~ssd_keras.layers.InputScaling` transform (Caffe mean
    + BGR, or ``[-1, 1]``), for models built without that layer: use one or the
    other, never both.
    """
    from ssd_keras.layers import InputScaling

    scaling = InputScaling(config.input_scaling, config.pixel_mean, config.channel_order,
                           dtype="float32")
    return scaling(tf.cast(images, tf.float32))


# ----------------------------------------------------------------------------- records -> tensors


def _records_to_tensors(records: Sequence[Record]):
    """Paths ``(n,)``, flat normalised boxes ``(total, 4)``, labels ``(total,)``, row splits ``(n+1,)``."""
    paths = [str(r.image_path) for r in records]
    boxes = [normalized_boxes(r) for r in records]
    for record, b in zip(records, boxes):   # NaN / degenerate boxes: fail here, naming the file
        validate_boxes(b, where=str(record.image_path))
    labels = [np.asarray(r.labels, np.int32).reshape(-1) for r in records]
    counts = np.array([len(b) for b in boxes], np.int64)
    splits = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat_boxes = (np.concatenate(boxes).astype(np.float32) if boxes
                  else np.zeros((0, 4), np.float32)).reshape(-1, 4)
    flat_labels = (np.concatenate(labels).astype(np.int32) if labels
                   else np.zeros((0,), np.int32))
    return (tf.constant(paths, tf.string), tf.constant(flat_boxes), tf.constant(flat_labels),
            tf.constant(splits))


def _assert_complete_image(contents, path):
    """Graph-side check that raises ``InvalidArgumentError`` naming ``path`` before decoding.

    The pre-training check (:func:`ssd_keras.data.check.filter_bad_records`)
    catches these by name; this catches them when records bypass it (a file
    changed on disk mid-run, ``train_dataset`` built by hand) -- a truncated
    JPEG (no end-of-image marker ``FFD9`` in its last bytes, the checker's
    rule) or PNG (no ``IEND``), or bytes of no JPEG/PNG/GIF/BMP -- where
    ``DecodeJpeg`` alone would fail naming no file.  The common case (a JPEG
    ending in ``FFD9``, a PNG ending in its ``IEND`` chunk) costs a few scalar
    ops; only other files are searched (last
    :data:`~ssd_keras.data.check.JPEG_EOI_WINDOW` bytes).
    """
    size = tf.strings.length(contents)
    is_jpeg = tf.io.is_jpeg(contents)
    ends_well = tf.equal(tf.strings.substr(contents, tf.maximum(size - 2, 0), 2), b"\xff\xd9")
    png_end = tf.equal(tf.strings.substr(contents, tf.maximum(size - 12, 0), 12), _PNG_END)

    def search():
        head = tf.strings.substr(contents, 0, 8)
        tail = tf.io.decode_raw(tf.strings.substr(
            contents, tf.maximum(size - JPEG_EOI_WINDOW, 0), JPEG_EOI_WINDOW), tf.uint8)

        def holds(*values):   # does `tail` hold the byte sequence `values` anywhere?
            n = tf.maximum(tf.shape(tail)[0] - len(values) + 1, 0)
            hit = tf.ones(n, tf.bool)
            for offset, value in enumerate(values):
                hit = hit & tf.equal(tail[offset:offset + n], value)
            return tf.reduce_any(hit)

        is_png = tf.equal(head, _PNG_MAGIC)
        is_other = tf.equal(tf.strings.substr(head, 0, 3), b"GIF") | tf.equal(
            tf.strings.substr(head, 0, 2), b"BM")
        return ((is_jpeg & holds(0xFF, 0xD9)) | (is_png & holds(73, 69, 78, 68))  # "IEND"
                | is_other)

    complete = tf.cond((is_jpeg & ends_well) | png_end, lambda: tf.constant(True), search)
    return tf.debugging.Assert(complete, [path, "truncated or not an image (a complete JPEG, "
                                                "PNG, GIF or BMP); python -m ssd_keras "
                                                "check-data lists such files"])


def _decode(contents, path=None):
    """Encoded image bytes -> uint8 ``(H, W, 3)`` RGB; with ``path``, bad files raise naming it."""
    if path is not None:
        with tf.control_dependencies([_assert_complete_image(contents, path)]):
            contents = tf.identity(contents)

    def jpeg():
        return tf.io.decode_jpeg(contents, channels=3)

    def other():
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    return tf.ensure_shape(image, [None, None, 3])


def _loader(tensors):
    """``index -> (uint8 image, boxes (m, 4), labels (m,))`` over the record tensors."""
    paths, flat_boxes, flat_labels, splits = tensors

    def load(index):
        start, stop = splits[index], splits[index + 1]
        image = _decode(tf.io.read_file(paths[index]), paths[index])
        return image, flat_boxes[start:stop], flat_labels[start:stop]
    return load


def _keep_for_training(record: Record) -> bool:
    """Crowd-only images (COCO): every region of the image is a crowd or background; skip them."""
    return record.num_objects > 0 or len(record.crowd_boxes) == 0


# ----------------------------------------------------------------------------- datasets


def make_dataset(records: Sequence[Record], config, batch_size: int, training: bool,
                 seed: Optional[int] = None, shuffle: Optional[bool] = None,
                 repeat: Optional[bool] = None, deterministic: Optional[bool] = None,
                 num_parallel_calls: int = tf.data.AUTOTUNE,
                 drop_remainder: Optional[bool] = None,
                 augment: Union[None, bool, AugmentFn] = None, skip_crowd: bool = True,
                 preprocess: bool = False) -> tf.data.Dataset:
    """Batches of ``(images, targets)`` for training or validation loss.

    Args:
        records: the annotated images (boxes in source pixels; converted with
            :func:`~ssd_keras.data.records.normalized_boxes`).
        config: a :class:`~ssd_keras.config.DetectorConfig` (image size,
            pixel mean, and the family's head for the targets).
        batch_size: images per batch.
        training: augment, shuffle, repeat and drop the last partial batch by
            default; otherwise plain resize, record order, one pass.
        seed: makes the shuffle order and every augmentation reproducible
            (see module docstring); ``None`` draws a fresh seed.
        shuffle, repeat, drop_remainder: default to ``training``.  ``repeat``
            makes the dataset infinite (use ``steps_per_epoch``); without it
            every new iterator (Keras epoch) still reshuffles and re-augments.
        deterministic: order guarantee of the parallel map; defaults to
            ``True`` when a ``seed`` is given, else tf.data's default.
        num_parallel_calls: of the decode/augment/encode map.
        augment: ``None`` -> ``training``; ``True``/``False``; or a callable
            ``(image float32 (H, W, 3) [0, 255], boxes (m, 4), labels (m,),
            seed (2,)) -> (image (h, w, 3), boxes, labels)`` that must return
            ``config.image_size`` images.
        skip_crowd: when training, drop images whose only annotations are COCO
            crowd regions (crowd boxes never become targets either way).
        preprocess: apply :func:`preprocess_images`; leave ``False`` for
            :class:`~ssd_keras.models.base.DetectorModel`, which normalises itself.

    Returns:
        A dataset of ``(images float32 (B, H, W, 3) RGB [0, 255], targets)``
        with the family's targets batched: SSD ``{"labels": int32 (B, N),
        "boxes": float32 (B, N, 4)}`` (``N`` anchors; labels 0 = background,
        -1 = ignored, 1..K classes; boxes are encoded offsets, zeros for
        non-positives); CenterNet heatmaps, sizes, offsets
        (:mod:`ssd_keras.families.centernet.targets`).
    """
    records = list(records)
    if training and skip_crowd:
        records = [r for r in records if _keep_for_training(r)]
    if not records:
        raise ValueError("make_dataset: no records")
    shuffle = training if shuffle is None else shuffle
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    if augment is None:
        augment = training
    if augment is True:
        augment = _default_augment(config)
    if deterministic is None and seed is not None:
        deterministic = True
    if seed is None:
        seed = random.SystemRandom().randrange(2 ** 31)

    height, width = (int(s) for s in config.image_size)
    encode = config.family.target_encoder(config)
    load = _loader(_records_to_tensors(records))

    indices = tf.data.Dataset.range(len(records))
    if shuffle:
        indices = indices.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # One random int64 per element, a new stream per iterator: with the record
    # index it forms the element's augmentation seed.
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    elements = tf.data.Dataset.zip(indices, draws)

    def prepare(index, draw):
        image, boxes, labels = load(index)
        image = tf.cast(image, tf.float32)
        if augment:
            element_seed = tf.stack([draw, index])
            image, boxes, labels = augment(image, boxes, labels, element_seed)
            image = tf.ensure_shape(image, [height, width, 3])
        else:
            image = resize(image, (height, width))
        if preprocess:
            image = preprocess_images(image, config)
        return image, encode(boxes, labels)

    ds = elements.map(prepare, num_parallel_calls=num_parallel_calls,
                      deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _default_augment(config):
    size = tuple(int(s) for s in config.image_size)
    mean = tuple(float(m) for m in config.pixel_mean)

    def augment(image, boxes, labels, seed):
        return ssd_augment(image, boxes, labels, seed, size, mean)
    return augment


def make_eval_dataset(records: Sequence[Record], config, batch_size: int,
                      num_parallel_calls: int = tf.data.AUTOTUNE,
                      preprocess: bool = False) -> tf.data.Dataset:
    """Batches for evaluation / inference, in record order, no augmentation.

    Yields ``(images float32 (B, H, W, 3) RGB [0, 255] resized (bilinear) to
    config.image_size, {"image_index": int32 (B,), "original_size": int32 (B, 2)})``.
    ``image_index`` is the position in ``records``; ``original_size`` is the
    decoded ``(height, width)`` in pixels, to scale normalised detections back
    (``ssd_keras.data.records.pixel_boxes``).  The last batch may be smaller.
    """
    records = list(records)
    if not records:
        raise ValueError("make_eval_dataset: no records")
    height, width = (int(s) for s in config.image_size)
    load = _loader(_records_to_tensors(records))

    def prepare(index):
        image, _, _ = load(index)
        original_size = tf.shape(image, out_type=tf.int32)[:2]
        image = resize(tf.cast(image, tf.float32), (height, width))
        if preprocess:
            image = preprocess_images(image, config)
        return image, {"image_index": tf.cast(index, tf.int32), "original_size": original_size}

    ds = tf.data.Dataset.range(len(records)).map(
        prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

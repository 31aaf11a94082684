"""A numpy transcription of Caffe SSD's expand + batch sampler, for distribution tests.

Transcribed from weiliu89/caffe, branch ``ssd``:

* ``src/caffe/data_transformer.cpp`` ``ExpandImage`` -- expand when
  ``U(0, 1) <= prob``; ratio ``U(1, max_expand_ratio)``; canvas
  ``int(H * ratio) x int(W * ratio)``; offsets ``floor(U(0, canvas - side))``.
* ``src/caffe/util/sampler.cpp`` ``GenerateBatchSamples`` / ``GenerateSamples``
  / ``SampleBBox`` / ``SatisfySampleConstraint``; ``src/caffe/util/bbox_util.cpp``
  ``JaccardOverlap`` (``normalized = true``: no +1 term, 0 without intersection).
* ``src/caffe/layers/annotated_data_layer.cpp`` -- ``caffe_rng_rand() %
  sampled_bboxes.size()``, the whole (expanded) image when the list is empty.
* ``examples/ssd/ssd_pascal.py`` -- the seven ``batch_sampler`` entries.

The loops keep the C++ structure (sampler by sampler, trial by trial, first
success kept) and run over ``n`` independent images at once: ``active`` marks the
images whose sampler has not yet found its sample.  It is a test helper, not
part of the package, and shares no code with ``ssd_keras.data.augment``.
"""
import numpy as np

#: ``ssd_pascal.py``: (max_trials, sampler or None = default Sampler {}, constraint).
SSD_PASCAL_BATCH_SAMPLERS = (
    (1, None, {}),
    (50, (0.3, 1.0, 0.5, 2.0), {"min_jaccard_overlap": 0.1}),
    (50, (0.3, 1.0, 0.5, 2.0), {"min_jaccard_overlap": 0.3}),
    (50, (0.3, 1.0, 0.5, 2.0), {"min_jaccard_overlap": 0.5}),
    (50, (0.3, 1.0, 0.5, 2.0), {"min_jaccard_overlap": 0.7}),
    (50, (0.3, 1.0, 0.5, 2.0), {"min_jaccard_overlap": 0.9}),
    (50, (0.3, 1.0, 0.5, 2.0), {"max_jaccard_overlap": 1.0}),
)
#: caffe.proto ``message Sampler`` defaults: min/max scale 1, min/max aspect 1.
DEFAULT_SAMPLER = (1.0, 1.0, 1.0, 1.0)


def jaccard_overlap(bbox1, bbox2):
    """bbox_util.cpp ``JaccardOverlap(normalized=true)``: (n, 4) x (n, m, 4) -> (n, m)."""
    bbox1 = bbox1[:, None, :]
    disjoint = ((bbox2[..., 0] > bbox1[..., 2]) | (bbox2[..., 2] < bbox1[..., 0])
                | (bbox2[..., 1] > bbox1[..., 3]) | (bbox2[..., 3] < bbox1[..., 1]))
    iw = np.minimum(bbox1[..., 2], bbox2[..., 2]) - np.maximum(bbox1[..., 0], bbox2[..., 0])
    ih = np.minimum(bbox1[..., 3], bbox2[..., 3]) - np.maximum(bbox1[..., 1], bbox2[..., 1])
    inter = np.where(disjoint | (iw <= 0) | (ih <= 0), 0.0, iw * ih)

    def size(b):  # BBoxSize(normalized=true)
        w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
        return np.where((w < 0) | (h < 0), 0.0, w * h)

    union = size(bbox1) + size(bbox2) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0).astype(np.float32)


def satisfy_sample_constraint(sampled, objects, valid, constraint):
    """sampler.cpp ``SatisfySampleConstraint`` (jaccard only, as ssd_pascal uses)."""
    if not constraint:
        return np.ones(len(sampled), bool)  # no constraint: "positive" by default
    iou = jaccard_overlap(sampled, objects)
    ok = valid.copy()
    if "min_jaccard_overlap" in constraint:
        ok &= ~(iou < constraint["min_jaccard_overlap"])
    if "max_jaccard_overlap" in constraint:
        ok &= ~(iou > constraint["max_jaccard_overlap"])
    return ok.any(axis=1)  # found for some object bbox; never with no objects


def sample_bbox(rng, n, sampler):
    """sampler.cpp ``SampleBBox``, n at once: (n, 4) normalised boxes."""
    min_scale, max_scale, min_aspect, max_aspect = sampler
    scale = rng.uniform(min_scale, max_scale, n).astype(np.float32)
    aspect = rng.uniform(min_aspect, max_aspect, n).astype(np.float32)
    aspect = np.maximum(aspect, scale ** 2)
    aspect = np.minimum(aspect, 1 / scale ** 2)
    width = scale * np.sqrt(aspect)
    height = scale / np.sqrt(aspect)
    w_off = rng.uniform(0, 1, n).astype(np.float32) * (1 - width)
    h_off = rng.uniform(0, 1, n).astype(np.float32) * (1 - height)
    return np.stack([w_off, h_off, w_off + width, h_off + height], axis=1)


def generate_batch_samples(rng, objects, valid, batch_samplers=SSD_PASCAL_BATCH_SAMPLERS):
    """``GenerateBatchSamples`` + the data layer's pick for n images.

    Args:
        objects: (n, m, 4) normalised boxes; ``valid`` (n, m) marks the real ones.

    Returns:
        ``patch`` (n, 4), ``chosen`` (n,) sampler index (-1: none found, whole
        image) and ``found`` (n, len(batch_samplers)) bool.
    """
    n = len(objects)
    found = np.zeros((n, len(batch_samplers)), bool)
    samples = np.zeros((n, len(batch_samplers), 4), np.float32)
    for k, (max_trials, sampler, constraint) in enumerate(batch_samplers):
        sampler = DEFAULT_SAMPLER if sampler is None else sampler
        for _ in range(max_trials):
            active = ~found[:, k]  # max_sample 1: stop at the first success
            if not active.any():
                break
            sampled = sample_bbox(rng, n, sampler)  # LocateBBox on the unit box: identity
            ok = active & satisfy_sample_constraint(sampled, objects, valid, constraint)
            samples[ok, k] = sampled[ok]
            found[ok, k] = True
    count = found.sum(axis=1)
    pick = rng.integers(0, np.maximum(count, 1))  # caffe_rng_rand() % size
    chosen = np.where(count > 0, np.argmax(np.cumsum(found, axis=1) > pick[:, None], axis=1), -1)
    patch = np.where((chosen >= 0)[:, None], samples[np.arange(n), np.maximum(chosen, 0)],
                     np.array([0, 0, 1, 1], np.float32))
    return patch, chosen, found


def expand_boxes(rng, boxes, height, width, prob=0.5, max_expand_ratio=4.0):
    """``ExpandImage``: (n, m, 4) boxes normalised to the image -> to the canvas, and the canvas size."""
    n = len(boxes)
    do_expand = rng.uniform(0, 1, n) <= prob
    ratio = np.where(do_expand, rng.uniform(1, max_expand_ratio, n), 1.0).astype(np.float32)
    canvas_h = (height * ratio).astype(np.int64)
    canvas_w = (width * ratio).astype(np.int64)
    h_off = np.floor(rng.uniform(0, 1, n) * (canvas_h - height))
    w_off = np.floor(rng.uniform(0, 1, n) * (canvas_w - width))
    # expand_bbox = [-w_off/W, -h_off/H, (canvas_w - w_off)/W, (canvas_h - h_off)/H];
    # TransformAnnotation projects each box onto it.
    px = boxes * np.array([width, height, width, height], np.float32)
    offset = np.stack([w_off, h_off, w_off, h_off], axis=1)[:, None, :]
    canvas = np.stack([canvas_w, canvas_h, canvas_w, canvas_h], axis=1)[:, None, :]
    return ((px + offset) / canvas).astype(np.float32), canvas_h, canvas_w

"""Batched per-class NMS decoding against a brute-force reference."""
import numpy as np
import pytest

from ssd_keras.boxes import decode_boxes
from ssd_keras.families.ssd.postprocess import decode_detections, detections_to_numpy


def iou1(a, b):
    lt = np.maximum(a[:2], b[:2]); rb = np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(rb - lt, 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def brute_force(boxes, scores, conf, iou_thr, top_k, keep_top_k):
    """Caffe DetectionOutput: per class top_k candidates above conf, greedy NMS, then keep_top_k."""
    dets = []
    for c in range(scores.shape[1]):
        idx = [i for i in np.argsort(-scores[:, c], kind="stable")[:top_k] if scores[i, c] > conf]
        kept = []
        for i in idx:
            if all(iou1(boxes[i], boxes[j]) <= iou_thr for j in kept):
                kept.append(i)
        dets += [(scores[i, c], c + 1, tuple(boxes[i])) for i in kept]
    dets.sort(key=lambda d: -d[0])
    return dets[:keep_top_k]


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_nms_matches_brute_force(activation):
    rng = np.random.default_rng(0)
    n, k = 300, 4
    anchors = np.concatenate([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))], 1).astype(np.float32)
    reg = rng.normal(scale=0.5, size=(2, n, 4)).astype(np.float32)
    c = k + 1 if activation == "softmax" else k
    logits = rng.normal(scale=2.0, size=(2, n, c)).astype(np.float32)
    out = decode_detections(logits, reg, anchors, activation=activation, score_threshold=0.05,
                            iou_threshold=0.45, max_detections=60, max_detections_per_class=40,
                            clip_boxes=False)
    boxes = decode_boxes(reg, anchors).numpy()
    e = np.exp(logits - logits.max(-1, keepdims=True))
    scores = (e / e.sum(-1, keepdims=True))[..., 1:] if activation == "softmax" else 1 / (1 + np.exp(-logits))
    for b in range(2):
        ref = brute_force(boxes[b], scores[b], 0.05, 0.45, 40, 60)
        got_n = int(out["num_detections"][b])
        assert got_n == len(ref)
        got = sorted(zip(out["scores"][b, :got_n].numpy(), out["classes"][b, :got_n].numpy(),
                         map(tuple, out["boxes"][b, :got_n].numpy())), key=lambda d: (-d[0], d[1]))
        ref = sorted(ref, key=lambda d: (-d[0], d[1]))
        for (s1, c1, b1), (s2, c2, b2) in zip(got, ref):
            assert s1 == pytest.approx(s2, abs=1e-5) and c1 == c2
            np.testing.assert_allclose(b1, b2, atol=1e-5)
        # padding is zero
        assert not out["classes"][b, got_n:].numpy().any()


def test_detections_to_numpy_pixels():
    decoded = {"boxes": np.array([[[0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]]], np.float32),
               "scores": np.array([[0.9, 0]], np.float32), "classes": np.array([[3, 0]]),
               "num_detections": np.array([1])}
    coco = detections_to_numpy(decoded, [(200, 100)], "coco")[0]
    np.testing.assert_allclose(coco["boxes"], [[0, 0, 50, 100]])
    voc = detections_to_numpy(decoded, [(200, 100)], "voc")[0]
    np.testing.assert_allclose(voc["boxes"], [[1, 1, 50, 100]])
    assert coco["labels"].tolist() == [3]


def test_dynamic_batch_matches_static_batch():
    """A batch of unknown size (tf.map_fn over images) decodes as the unrolled static batch."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    n, k = 200, 3
    anchors = np.concatenate([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))], 1).astype(np.float32)
    reg = rng.normal(scale=0.5, size=(3, n, 4)).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(3, n, k)).astype(np.float32)
    kwargs = dict(activation="sigmoid", score_threshold=0.05, max_detections=30,
                  max_detections_per_class=20)
    static = decode_detections(logits, reg, anchors, **kwargs)
    dynamic = tf.function(lambda c, r: decode_detections(c, r, anchors, **kwargs),
                          input_signature=[tf.TensorSpec([None, n, k]), tf.TensorSpec([None, n, 4])])
    out = dynamic(logits, reg)
    for key in ("boxes", "scores", "classes", "num_detections"):
        np.testing.assert_array_equal(out[key].numpy(), static[key].numpy(), err_msg=key)
    assert out["num_detections"].numpy().min() > 0

"""The SSD model class shared by every architecture, and the prediction heads.

:class:`SSDModel` is a functional Keras model built from a
:class:`~ssd_keras.config.DetectorConfig`.  It

* takes RGB float images ``(B, H, W, 3)`` in ``[0, 255]`` (it preprocesses itself),
* returns ``{"classification": (B, N, C) logits, "regression": (B, N, 4) offsets}``
  for the ``N = config.num_anchors()`` anchors in the order of ``config.anchors()``
  (``C = K + 1`` with background first for the softmax loss, ``C = K`` for sigmoid),
  both float32 even under mixed precision,
* computes its own loss from the config (``model.compile(optimizer)`` is enough)
  and logs its parts as the metrics ``classification_loss``,
  ``localization_loss``, ``regularization_loss`` beside Keras' total ``loss``,
* serialises to ``.keras`` through its config alone (safe mode, no
  ``custom_objects``), since rebuilding from the config gives the same graph.

Architectures register a builder ``fn(images, config) -> (class_logits, box_offsets)``
under their ``config.architecture`` name with :func:`register_architecture`; the
package :mod:`ssd_keras.models` imports the builder modules, so they are
registered before this module can be used (it never imports them itself).
Starting weights (``build_model(config, weights=...)``) are
:mod:`ssd_keras.weights.loading`'s.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ssd_keras.config import DetectorConfig
from ssd_keras.layers import InputScaling
from ssd_keras.models.heads import concat_predictions, separate_conv_heads  # noqa: F401

_ARCHITECTURES = {}


def register_architecture(name):
    """Decorator: register ``fn(images, config) -> (class_logits, box_offsets)``."""
    def wrap(fn):
        _ARCHITECTURES[name] = fn
        return fn
    return wrap


def regularizer(config):
    """Keras L2 equivalent to the config's Caffe-convention weight decay (``L2(wd / 2)``)."""
    return keras.regularizers.L2(config.weight_decay / 2.0) if config.weight_decay > 0 else None


def conv_heads(features, config, kernel_size=3, names=None, bias_init=0.0, depthwise=False):
    """:func:`~ssd_keras.models.heads.separate_conv_heads` with the config's boxes, classes, decay.

    Args:
        features: list of ``(B, h_k, w_k, c_k)`` source feature maps.
        config: the detector config (boxes per cell, class count, weight decay).
        kernel_size, names, depthwise: as ``separate_conv_heads``.
        bias_init: class-bias initial value (``-4.6`` ~ prior 0.01 for focal loss).

    Returns:
        ``(B, N, C)`` class logits and ``(B, N, 4)`` offsets.
    """
    return separate_conv_heads(features, config.boxes_per_cell(), config.num_outputs,
                               names=names, kernel_size=kernel_size, class_bias_init=bias_init,
                               depthwise=depthwise, kernel_regularizer=regularizer(config))


def concat_predictions(cls_list, box_list):
    """Concatenate per-layer ``(B, n_k, C)`` / ``(B, n_k, 4)`` tensors into float32 outputs."""
    cls = keras.layers.Concatenate(axis=1, name="mbox_conf")(cls_list) if len(cls_list) > 1 else cls_list[0]
    box = keras.layers.Concatenate(axis=1, name="mbox_loc")(box_list) if len(box_list) > 1 else box_list[0]
    cls = keras.layers.Activation("linear", dtype="float32", name="classification")(cls)
    box = keras.layers.Activation("linear", dtype="float32", name="regression")(box)
    return cls, box


def _build_graph(config: DetectorConfig):
    if config.architecture not in _ARCHITECTURES:
        raise ValueError(f"{config.name}: unknown architecture {config.architecture!r}; "
                         f"known: {sorted(_ARCHITECTURES)}")
    h, w = config.image_size
    images = keras.Input((h, w, 3), name="images")
    x = InputScaling(config.input_scaling, config.pixel_mean, config.channel_order,
                     name="input_scaling")(images)
    cls, box = _ARCHITECTURES[config.architecture](x, config)
    expected = config.num_anchors()
    if cls.shape[1] != expected or box.shape[1] != expected:
        raise ValueError(
            f"{config.name}: the {config.architecture} graph predicts {cls.shape[1]} boxes but "
            f"the config's anchors number {expected} (feature maps "
            f"{config.get_feature_map_sizes()}); fix feature_map_sizes/feature_strides")
    return images, {"classification": cls, "regression": box}


def _replicas_in_sync() -> int:
    """Replicas of the current ``tf.distribute`` strategy in a replica context (else 1)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


@keras.saving.register_keras_serializable(package="ssd_keras")
class SSDModel(keras.Model):
    """A single-shot detector built from a :class:`DetectorConfig` (see module docstring)."""

    def __init__(self, detector_config, **kwargs):
        if isinstance(detector_config, dict):
            detector_config = DetectorConfig.from_dict(detector_config)
        inputs, outputs = _build_graph(detector_config)
        kwargs.setdefault("name", detector_config.name)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.detector_config = detector_config
        self.classification_loss_tracker = keras.metrics.Mean(name="classification_loss")
        self.localization_loss_tracker = keras.metrics.Mean(name="localization_loss")
        self.regularization_loss_tracker = keras.metrics.Mean(name="regularization_loss")
        self._anchors_cache = None

    # ------------------------------------------------------------- config
    def get_config(self):
        return {"detector_config": self.detector_config.to_dict(), "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def anchors(self):
        """float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` (cached ``config.anchors()``)."""
        if self._anchors_cache is None:
            self._anchors_cache = self.detector_config.anchors()
        return self._anchors_cache

    # --------------------------------------------------------------- loss
    def loss_components(self, y, y_pred):
        """``{"classification", "localization"}`` scalars (see :mod:`ssd_keras.families.ssd.losses`).

        In a ``tf.distribute`` replica context with ``R > 1`` replicas the
        batch is this replica's share of the global batch, and both parts are
        normalised by the positive anchors of the *global* batch (an
        all-reduce of the per-replica counts): the ``R`` replicas' parts then
        add up to exactly the single-device loss of the whole batch.
        """
        from ssd_keras.families.ssd.losses import detection_loss, num_positives
        normalizer = None
        replicas = _replicas_in_sync()
        if replicas > 1:
            import tensorflow as tf
            normalizer = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, num_positives(y))
        return detection_loss(y, y_pred, self.detector_config, normalizer=normalizer)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """This replica's share of the loss: ``classification + localization + reg / R``.

        Keras sums the replicas' gradients, so the share is what makes a step
        on ``R`` replicas the single-device step on the same global batch: the
        detection parts are already global-batch shares (:meth:`loss_components`)
        and each replica holds the whole weight-decay term, so it adds ``1/R``
        of it.  The trackers are fed ``R`` times the share, so their
        (replica-averaged) results are the global batch's values.  One device:
        ``R = 1``, the plain loss.
        """
        parts = self.loss_components(y, y_pred)
        reg = ops.zeros((), "float32")
        for loss in self.losses:
            reg = reg + ops.cast(ops.sum(loss), "float32")
        replicas = _replicas_in_sync()
        total = parts["classification"] + parts["localization"] + reg / replicas
        self.classification_loss_tracker.update_state(parts["classification"] * replicas)
        self.localization_loss_tracker.update_state(parts["localization"] * replicas)
        self.regularization_loss_tracker.update_state(reg)
        return total

    # ---------------------------------------------------------- inference
    def detect(self, images, batch_size=8, **overrides):
        """Run the model and decode: list (one per image) of numpy dicts.

        Args:
            images: ``(B, H, W, 3)`` RGB ``[0, 255]`` at the model's input size.
            overrides: decoding overrides (``score_threshold``, ``iou_threshold``,
                ``max_detections``, ``max_detections_per_class``).

        Returns:
            ``[{"boxes": (k, 4) normalised corners, "scores": (k,), "labels": (k,)}]``.
        """
        from ssd_keras.families.ssd.postprocess import decode_for_config, detections_to_numpy

        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            pred = self(images[start:start + batch_size], training=False)
            out.extend(detections_to_numpy(
                decode_for_config(pred, self.detector_config, self.anchors(), **overrides)))
        return out


def build_inference_model(model: SSDModel, **decode_overrides) -> keras.Model:
    """Wrap a detector with :class:`~ssd_keras.families.ssd.postprocess.DecodeDetections` (TF backend)."""
    from ssd_keras.families.ssd.postprocess import DecodeDetections

    out = DecodeDetections(model.detector_config, name="detections", **decode_overrides)(model.output)
    return keras.Model(model.input, out, name=f"{model.name}_inference")

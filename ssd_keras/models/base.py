"""The task model shared by every detector family and architecture.

:class:`DetectorModel` is a functional Keras model built from a
:class:`~ssd_keras.config.DetectorConfig`.  It

* takes RGB float images ``(B, H, W, 3)`` in ``[0, 255]`` (it preprocesses itself),
* returns the raw outputs of its family as a dict of float32 tensors (SSD:
  ``{"classification": (B, N, C) logits, "regression": (B, N, 4) offsets}`` for
  the ``N = config.num_anchors()`` anchors in the order of ``config.anchors()``,
  ``C = K + 1`` with background first for the softmax loss, ``C = K`` for
  sigmoid; CenterNet: ``object_center`` / ``box_scale`` / ``box_offset`` maps),
* computes its own loss through ``config.family`` (``model.compile(optimizer)``
  is enough) and logs its parts as the metrics ``<name>_loss`` (SSD:
  ``classification_loss``, ``localization_loss``) and ``regularization_loss``
  beside Keras' total ``loss``,
* decodes through the family (:meth:`DetectorModel.detect`,
  :func:`build_inference_model`),
* serialises to ``.keras`` through its config alone (safe mode, no
  ``custom_objects``), since rebuilding from the config gives the same graph.
  :class:`SSDModel` is the same class under the name older files carry.

Architectures register a builder ``fn(images, config)`` under their
``config.architecture`` name with :func:`register_architecture`; it returns the
raw outputs (a dict, or a tuple in ``family.output_names`` order) or a list of
feature maps for the family's head (see :func:`build_detector_graph`).  The
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
    """Decorator: register ``fn(images, config) -> raw outputs or feature maps``.

    ``images``: the scaled input ``(B, H, W, 3)``.  Return the raw outputs
    (a dict, or a tuple in ``config.family.output_names`` order) or a list of
    ``(B, h_k, w_k, c_k)`` feature maps for the family's head.
    """
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


def build_detector_graph(config: DetectorConfig):
    """``(images, outputs)``: the Keras input ``(B, H, W, 3)`` RGB ``[0, 255]`` and raw outputs.

    The input is scaled by the model itself (:class:`InputScaling`), then the
    architecture's builder runs.  A builder returns either its head's raw
    outputs -- a dict, or a tuple in ``family.output_names`` order (the SSD
    builders: ``(class_logits, box_offsets)``, their heads named as the
    imported weights expect) -- or a *list* of feature maps, which the
    family's :meth:`~ssd_keras.families.base.DetectorFamily.build_head` turns
    into the raw outputs (CenterNet).  The family then checks the outputs
    against the config (SSD: ``N = config.num_anchors()`` boxes).
    """
    if config.architecture not in _ARCHITECTURES:
        raise ValueError(f"{config.name}: unknown architecture {config.architecture!r}; "
                         f"known: {sorted(_ARCHITECTURES)}")
    family = config.family
    h, w = config.image_size
    images = keras.Input((h, w, 3), name="images")
    x = InputScaling(config.input_scaling, config.pixel_mean, config.channel_order,
                     name="input_scaling")(images)
    built = _ARCHITECTURES[config.architecture](x, config)
    if isinstance(built, list):
        built = family.build_head(built, config)
    if isinstance(built, tuple):
        built = dict(zip(family.output_names, built))
    outputs = dict(built)
    family.check_outputs(outputs, config)
    return images, outputs


def _replicas_in_sync() -> int:
    """Replicas of the current ``tf.distribute`` strategy in a replica context (else 1)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


@keras.saving.register_keras_serializable(package="ssd_keras")
class DetectorModel(keras.Model):
    """A detector of any family, built from a :class:`DetectorConfig` (see module docstring).

    The graph, the loss, the metric names and the decoding all come from
    ``config.family`` (the family of ``config.head.kind``); this class only
    adds what every family shares: the weight-decay term, the replica
    arithmetic of ``tf.distribute`` and serialisation through the config.

    Metrics: ``<name>_loss`` for every name in ``family.loss_names`` (SSD:
    ``classification_loss``, ``localization_loss``; CenterNet:
    ``object_center_loss``, ``box_scale_loss``, ``box_offset_loss``), then
    ``regularization_loss``, beside Keras' total ``loss``.
    """

    def __init__(self, detector_config, **kwargs):
        if isinstance(detector_config, dict):
            detector_config = DetectorConfig.from_dict(detector_config)
        inputs, outputs = build_detector_graph(detector_config)
        kwargs.setdefault("name", detector_config.name)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.detector_config = detector_config
        self.family = detector_config.family
        #: metric name -> ``keras.metrics.Mean``, in logging order (:func:`loss_metric_names`).
        self.loss_trackers = {name: keras.metrics.Mean(name=name)
                              for name in loss_metric_names(detector_config)}

    # ------------------------------------------------------------- config
    def get_config(self):
        return {"detector_config": self.detector_config.to_dict(), "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def anchors(self):
        """SSD only: float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` (``config.anchors()``)."""
        return self.detector_config.anchors()

    # --------------------------------------------------------------- loss
    def loss_components(self, y, y_pred):
        """``{name: scalar}`` for the family's ``loss_names`` (this replica's share).

        In a ``tf.distribute`` replica context with ``R > 1`` replicas the
        batch is this replica's share of the global batch, and every part is
        normalised by the family's count (positive anchors, objects) of the
        *global* batch (an all-reduce of ``family.loss_normalizer``): the
        ``R`` replicas' parts then add up to exactly the single-device loss of
        the whole batch.
        """
        normalizer = None
        if _replicas_in_sync() > 1:
            import tensorflow as tf
            normalizer = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, self.family.loss_normalizer(y))
        return self.family.loss(y, y_pred, self.detector_config, normalizer=normalizer)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """This replica's share of the loss: ``sum(family parts) + reg / R``.

        Keras sums the replicas' gradients, so the share is what makes a step
        on ``R`` replicas the single-device step on the same global batch: the
        family parts are already global-batch shares (:meth:`loss_components`)
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
        total = reg / replicas
        for name in self.family.loss_names:
            total = total + parts[name]
            self.loss_trackers[f"{name}_loss"].update_state(parts[name] * replicas)
        self.loss_trackers["regularization_loss"].update_state(reg)
        return total

    # ---------------------------------------------------------- inference
    def detect(self, images, batch_size=8, **overrides):
        """Run the model and decode: list (one per image) of numpy dicts.

        Args:
            images: ``(B, H, W, 3)`` RGB ``[0, 255]`` at the model's input size.
            overrides: the family's decoding overrides (SSD: ``score_threshold``,
                ``iou_threshold``, ``max_detections``, ``max_detections_per_class``;
                CenterNet: ``score_threshold``, ``max_detections``, ``peak_pool``).

        Returns:
            ``[{"boxes": (k, 4) normalised corners, "scores": (k,), "labels": (k,)}]``.
        """
        from ssd_keras.families.base import detections_to_numpy

        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            pred = self(images[start:start + batch_size], training=False)
            out.extend(detections_to_numpy(
                self.family.decode(pred, self.detector_config, **overrides)))
        return out


def loss_metric_names(config) -> tuple:
    """The loss metrics a model of ``config`` logs, in order: ``<name>_loss``... ``regularization_loss``."""
    return tuple(f"{n}_loss" for n in config.family.loss_names) + ("regularization_loss",)


@keras.saving.register_keras_serializable(package="ssd_keras")
class SSDModel(DetectorModel):
    """:class:`DetectorModel` under the name saved SSD ``.keras`` files carry (``ssd_keras>SSDModel``).

    Identical behaviour; kept so every file written before the family seam
    reloads, and for callers that build ``SSDModel(config)``.
    """


def build_inference_model(model: DetectorModel, **decode_overrides) -> keras.Model:
    """``images -> detections`` with boxes in input pixels: the family's decoder layer on top.

    SSD: :class:`~ssd_keras.families.ssd.postprocess.DecodeDetections` (per-class
    NMS); CenterNet: :class:`~ssd_keras.families.centernet.decode.CenterNetDecoder`.
    Output dict: ``boxes (B, D, 4)``, ``scores (B, D)``, ``classes (B, D)``
    int32, ``num_detections (B,)`` (TF backend).
    """
    config = model.detector_config
    out = config.family.decoder_layer(config, **decode_overrides)(model.output)
    return keras.Model(model.input, out, name=f"{model.name}_inference")

"""The detector-family seam: what differs between SSD, CenterNet and any later family.

A :class:`DetectorFamily` owns exactly three things (torchvision's
``SSD(backbone, anchor_generator, head)`` / FCOS, keras-hub's label encoder and
prediction decoder, mmdetection's ``AnchorHead`` / ``AnchorFreeHead``):

1. its **target encoder** -- ground truth of one image -> fixed-shape training
   targets, TensorFlow graph ops only (it runs inside ``tf.data.Dataset.map``);
2. its **loss components** -- named scalars, each logged, plotted and tabulated
   under its own name (``<name>_loss``); the model adds the weight-decay term
   ``regularization_loss`` and the total;
3. its **decoder** -- raw model outputs -> boxes, scores, classes, as a function
   and as a serialisable Keras layer for the inference model.

plus the **head** that turns backbone/neck features into the raw outputs the
other three understand.  Everything common (image size, classes, backbone,
preprocessing, weight decay, training) stays outside the family and never asks
which family it is talking to: it looks the family up by the config's
``head.kind`` in :data:`FAMILIES`.

Conventions at the seam
-----------------------
* ground-truth boxes: float32 ``(m, 4)`` normalised corners
  ``[xmin, ymin, xmax, ymax]`` of the model input; labels int32 ``(m,)`` in
  ``1..K`` (``-1``: ignore, e.g. an object cut by a training crop); ``m`` may be 0;
* targets: a dict of fixed-shape tensors per image (the pipeline batches them);
* raw outputs: a dict of float32 tensors ``(B, ...)`` (the model's outputs);
* decoded detections (:meth:`DetectorFamily.decode`): ``boxes`` ``(B, D, 4)``
  normalised corners, ``scores`` ``(B, D)``, ``classes`` ``(B, D)`` int32
  ``1..K`` (0 = padding), ``num_detections`` ``(B,)`` int32;
* the decoder layer returns the same dict with ``boxes`` in pixels of the model
  input (what ``build_inference_model`` and :mod:`ssd_keras.export` consume).

Who calls what: ``DetectorConfig`` (``head_from_dict``, ``check_config``),
:func:`ssd_keras.models.base.build_detector_graph` (``build_head``,
``check_outputs``), :class:`~ssd_keras.models.base.DetectorModel`
(``loss_normalizer``, ``loss``, ``decode``), :mod:`ssd_keras.data.pipeline` and
the digits crops (``target_encoder``), :func:`~ssd_keras.models.base.build_inference_model`
and the exporters (``decoder_layer``), ``evaluation.runner.predict_records``
(``decode``).  A new family is a subclass registered with
:func:`register_family` (see ``tests/test_families.py`` for a complete toy one).
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Sequence, Tuple

#: kind -> family instance; :func:`register_family` fills it.
FAMILIES: Dict[str, "DetectorFamily"] = {}

#: the package's own families: imported on their first lookup, so a config can
#: name its family before anything imported the family's module.
BUILTIN_FAMILIES = {"ssd": "ssd_keras.families.ssd.family",
                    "centernet": "ssd_keras.families.centernet.family"}


class DetectorFamily:
    """Base class of a detector family; subclasses override every method (the two
    ``check_*`` hooks are optional).

    Attributes:
        kind: the ``kind`` of this family's head config (``"ssd"``, ``"centernet"``).
        loss_names: names of the loss components :meth:`loss` returns, in the
            order they are logged (e.g. ``("classification", "localization")``).
    """

    kind: str = ""
    loss_names: Tuple[str, ...] = ()
    #: names of the raw outputs, the order of an architecture's tuple (see
    #: :func:`ssd_keras.models.base.build_detector_graph`).
    output_names: Tuple[str, ...] = ()
    #: the decoding overrides :meth:`decode` and :meth:`decoder_layer` take
    #: (the command lines check their flags against it).
    decode_options: Tuple[str, ...] = ()

    # ---------------------------------------------------------------- config
    def head_from_dict(self, d: dict):
        """The family's head config (a frozen dataclass with ``kind``) from its dict."""
        raise NotImplementedError

    def check_config(self, config) -> None:
        """Raise one line when ``config``'s common fields do not suit the head (default: fine).

        Called by ``DetectorConfig`` after its own checks (e.g. CenterNet: the
        input size must be a multiple of the output stride).
        """

    # ----------------------------------------------------------------- model
    def build_head(self, features: Sequence, config) -> Dict[str, object]:
        """Backbone/neck feature maps ``[(B, h_k, w_k, c_k)]`` -> raw outputs dict (float32)."""
        raise NotImplementedError

    def check_outputs(self, outputs: Dict[str, object], config) -> None:
        """Raise one line when the graph's raw outputs do not fit ``config`` (default: no check)."""

    # --------------------------------------------------------------- targets
    def target_encoder(self, config, image_size=None) -> Callable:
        """``encode(boxes (m, 4), labels (m,)) -> targets dict`` for inputs of ``image_size``.

        Graph ops only.  ``image_size`` (``(h, w)``, default ``config.image_size``)
        lets a fully convolutional model train on crops of another size.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ loss
    def loss_normalizer(self, y_true) -> object:
        """The local count the loss divides by (positives, objects), a float32 scalar.

        Under ``tf.distribute`` the model all-reduces it over replicas and
        passes the global count to :meth:`loss`, so replicas add up to the
        single-device loss of the whole batch.
        """
        raise NotImplementedError

    def loss(self, y_true, y_pred, config, normalizer=None) -> Dict[str, object]:
        """``{name: scalar}`` for every name in :attr:`loss_names` (``keras.ops``)."""
        raise NotImplementedError

    # -------------------------------------------------------------- decoding
    def decode(self, y_pred, config, **overrides) -> Dict[str, object]:
        """Raw outputs -> padded detections with normalised boxes (see module docstring)."""
        raise NotImplementedError

    def decoder_layer(self, config, **overrides):
        """A serialisable Keras layer: raw outputs -> detections with boxes in input pixels."""
        raise NotImplementedError


def detections_to_numpy(decoded, image_sizes=None, convention="coco"):
    """Batched decoder output (any family) -> list (one per image) of numpy dicts.

    Each dict has ``boxes`` ``(k, 4)``, ``scores`` ``(k,)``, ``labels`` ``(k,)``
    for the image's ``num_detections`` = ``k`` entries.  Boxes are normalised
    unless ``image_sizes`` (a list of ``(height, width)``) is given, then in
    that image's source pixels under ``convention`` (``"voc"``: 1-based,
    ``"coco"``: 0-based; see :mod:`ssd_keras.data.records`).
    """
    import numpy as np

    from ssd_keras.data.records import pixel_boxes

    boxes = np.asarray(decoded["boxes"])
    scores = np.asarray(decoded["scores"])
    classes = np.asarray(decoded["classes"])
    counts = np.asarray(decoded["num_detections"])
    out = []
    for i in range(len(counts)):
        n = int(counts[i])
        b = boxes[i, :n]
        if image_sizes is not None:
            h, w = image_sizes[i]
            b = pixel_boxes(b, w, h, convention)
        out.append({"boxes": b.astype(np.float32), "scores": scores[i, :n].astype(np.float32),
                    "labels": classes[i, :n].astype(np.int32)})
    return out


def register_family(family: DetectorFamily) -> DetectorFamily:
    """Register ``family`` under ``family.kind`` (idempotent for the same class)."""
    if not family.kind:
        raise ValueError(f"{type(family).__name__} has no kind")
    FAMILIES[family.kind] = family
    return family


def get_family(kind: str) -> DetectorFamily:
    """The registered family for a head ``kind``; a one-line error naming the known ones."""
    if kind not in FAMILIES and kind in BUILTIN_FAMILIES:
        importlib.import_module(BUILTIN_FAMILIES[kind])
    if kind not in FAMILIES:
        raise ValueError(f"unknown detector family {kind!r}; known: "
                         f"{sorted(set(FAMILIES) | set(BUILTIN_FAMILIES))}")
    return FAMILIES[kind]

"""Loading dispatch: which source goes which way, and a new model's starting weights.

* :func:`load_into` is the one entry point (``build_model(config, weights=...)``,
  ``train --weights``): ``"imagenet"`` (for MobileNet presets the backbone shipped
  in :mod:`ssd_keras.pretrained`, offline; for VGG16 keras.applications' VGG16,
  fc-reduced by :func:`~ssd_keras.models.vgg.reduce_vgg16_weights`), a Keras-2
  ``.h5`` (:mod:`ssd_keras.weights.legacy`), a Keras 3 ``.weights.h5``
  (:func:`load_weights_h5`) or a ``.keras`` model.  Backbone files are matched by
  layer name (:func:`~ssd_keras.weights.by_name.load_layer_weights`), which
  returns (and prints) what was loaded, skipped, mismatched and left initial.
* :func:`load_initial_weights` / :func:`build_model`: a new detector's starting
  weights -- the config's backbone file, then the ``weights`` asked for.

Imports run one way: this module uses the model builders (:mod:`ssd_keras.models`),
which never import weights code; the manifest hub (:mod:`ssd_keras.weights.hub`)
uses this module.
"""
from __future__ import annotations

import os
import warnings

import keras
import numpy as np

from ssd_keras import presets, pretrained
from ssd_keras.models.base import DetectorModel
from ssd_keras.models.vgg import reduce_vgg16_weights, vgg16_arrays_to_ssd
from ssd_keras.weights.by_name import load_layer_weights
from ssd_keras.weights.legacy import load_legacy_h5

#: where keras.applications downloads the ImageNet VGG16 (with the top, 528 MB) from
VGG16_IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                      "vgg16_weights_tf_dim_ordering_tf_kernels.h5")

#: architectures whose ``"imagenet"`` backbone ships in :mod:`ssd_keras.pretrained`
MOBILENET_V2_ARCHITECTURES = ("ssd_mobilenet_v2", "ssd_mobilenet_v2_fpnlite")


def set_vgg16_base(model, reduced: dict) -> None:
    """Copy :func:`~ssd_keras.models.vgg.reduce_vgg16_weights` output into an SSD VGG16 model.

    By layer name; a name the model lacks is an error (the arrays are the whole base).
    """
    report = load_layer_weights(model, reduced, "reduced VGG16 base", verbose=False)
    if report["skipped"]:
        raise ValueError(f"reduced VGG16 base: {model.name} has no layer "
                         f"{', '.join(report['skipped'])}")


def load_vgg16_imagenet(model, verbose=True) -> dict:
    """Initialise the base of an SSD VGG16 model from ImageNet VGG16 (keras.applications).

    Keras downloads the 528 MB file once into ``~/.keras/models`` (then it is
    read from there).  Offline, give the file itself: ``load_into(model,
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5")`` (or the ``_notop`` file,
    which lacks fc6 / fc7).  Returns the :func:`load_layer_weights` report.
    """
    try:
        vgg = keras.applications.VGG16(include_top=True, weights="imagenet")
    except Exception as error:   # Keras raises a bare Exception for a failed download
        raise OSError(f"{model.name}: the ImageNet VGG16 weights could not be downloaded "
                      f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                      f"download {VGG16_IMAGENET_URL} elsewhere and pass the file: "
                      f"--weights PATH (or load_into(model, PATH))") from None
    return load_layer_weights(model, reduce_vgg16_weights(vgg), "keras.applications VGG16 ImageNet",
                              verbose=verbose)


def _keras_weights_layer_groups(path) -> list:
    """The top-level layer groups of a Keras 3 ``.weights.h5`` (keyed by class and position)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return list(h5["layers"].keys()) if "layers" in h5 else []
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 weights file ({error})") from None


def _backbone_templates(model, groups):
    """keras.applications backbones (``weights=None``) whose weights file could serve ``model``."""
    config = getattr(model, "detector_config", None)
    architecture = config.architecture if config is not None else None
    top = "dense" in groups   # a classifier: the file of a model built with include_top=True
    if architecture in MOBILENET_V2_ARCHITECTURES:
        alpha = float(config.backbone.get("depth_multiplier", 1.0))
        yield (f"MobileNetV2(alpha={alpha:g})",
               lambda: keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha,
                                                      include_top=top, weights=None))
    elif architecture == "ssd_vgg16":
        yield "VGG16", lambda: keras.applications.VGG16(include_top=top, weights=None)


def load_weights_h5(model, path, skip_mismatch=False, verbose=True) -> dict | None:
    """Load a Keras 3 ``.weights.h5``: the model's own, or a keras.applications backbone's.

    Keras 3 keys these files by layer class and position (``layers/conv2d_3``),
    not by name, so a backbone file is first loaded into the keras.applications
    model it came from (``MobileNetV2`` at the config's ``depth_multiplier``,
    ``VGG16``; with the top when the file has a classifier), then copied into
    ``model`` by layer name (VGG16 through
    :func:`~ssd_keras.models.vgg.vgg16_arrays_to_ssd`).

    Returns:
        ``None`` for the model's own file (every weight loaded), else the
        :func:`load_layer_weights` report.
    """
    groups = _keras_weights_layer_groups(path)
    if len(groups) == len(model.layers):
        saved = model.get_weights()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.load_weights(path)
            return None
        except ValueError:
            model.set_weights(saved)   # Keras may have set some layers before it failed
    for label, build in _backbone_templates(model, groups):
        template = build()
        if len(template.layers) != len(groups):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                template.load_weights(path)
        except ValueError:
            continue
        arrays = {layer.name: [np.asarray(w) for w in layer.get_weights()]
                  for layer in template.layers if layer.weights}
        if model.detector_config.architecture == "ssd_vgg16":
            arrays = vgg16_arrays_to_ssd(arrays)
        return load_layer_weights(model, arrays, f"{os.path.basename(path)} ({label})",
                                  skip_mismatch=skip_mismatch, verbose=verbose)
    raise ValueError(f"{path}: neither the weights of this {model.name} model nor of a "
                     f"keras.applications backbone it contains (a Keras 3 .weights.h5 is read by "
                     f"layer position; for a backbone of another width use its .h5 file)")


def imagenet_backbone_file(config) -> str:
    """The shipped ImageNet backbone file for ``config`` (MobileNetV2 at depth_multiplier 1.0).

    Raises:
        ValueError: another architecture or width (naming what to pass instead).
    """
    if config.architecture not in MOBILENET_V2_ARCHITECTURES:
        raise ValueError(f"{config.name}: no ImageNet backbone ships for {config.architecture}; "
                         f"give a weights file instead")
    alpha = float(config.backbone.get("depth_multiplier", 1.0))
    if alpha != 1.0:
        raise ValueError(f"{config.name}: the shipped ImageNet MobileNetV2 is depth_multiplier "
                         f"1.0, this config has {alpha}; give keras.applications' "
                         f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha:g}_224_no_top.h5 "
                         f"as a file (backbone imagenet_weights=PATH, or --weights PATH)")
    return pretrained.shipped_path(pretrained.MOBILENET_V2_IMAGENET)


def load_into(model, weights, skip_mismatch=False, verbose=True) -> dict | None:
    """Load ``weights`` into ``model``; returns the load report (``None`` for a whole-model file).

    ``weights`` is one of

    * ``"imagenet"``: the ImageNet backbone -- for MobileNet presets the file
      shipped in the package (offline, :func:`imagenet_backbone_file`), for the
      VGG16 presets keras.applications' VGG16 reduced to fc6 / fc7
      (:func:`load_vgg16_imagenet`; downloads once);
    * a Keras-2 layout ``.h5`` / ``.hdf5`` file, matched by layer name
      (:func:`~ssd_keras.weights.legacy.load_legacy_h5`): a backbone-only file
      such as keras.applications' ``vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`` or
      ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``, or
      an old ssd_keras model;
    * a Keras 3 ``.weights.h5``: this model's own weights (``model.save_weights``),
      or those of a keras.applications backbone (``VGG16`` / ``MobileNetV2``
      built with ``weights=None``, then ``save_weights``), matched by layer name;
    * a ``.keras`` model of the same architecture (all weights).

    The report (:func:`~ssd_keras.weights.by_name.load_layer_weights`) names
    what was loaded, skipped and left at its initial value; it is printed unless
    ``verbose=False``.
    """
    if isinstance(weights, str) and weights == "imagenet":
        config = model.detector_config
        if config.architecture == "ssd_vgg16":
            return load_vgg16_imagenet(model, verbose=verbose)
        if config.architecture in MOBILENET_V2_ARCHITECTURES:
            return load_legacy_h5(model, imagenet_backbone_file(config),
                                  skip_mismatch=skip_mismatch, verbose=verbose)
        raise ValueError(f"{config.name}: no ImageNet weights for architecture "
                         f"{config.architecture}; give a weights file")
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".weights.h5"):
        return load_weights_h5(model, path, skip_mismatch=skip_mismatch, verbose=verbose)
    if path.endswith(".keras"):
        src = keras.saving.load_model(path, compile=False)
        model.set_weights(src.get_weights())
        return None
    if path.endswith((".h5", ".hdf5")):
        return load_legacy_h5(model, path, skip_mismatch=skip_mismatch, verbose=verbose)
    raise ValueError(f"{path}: unknown weights format (expected .weights.h5, .keras or .h5)")


def load_initial_weights(model, weights=None) -> None:
    """A new model's starting weights: the config's backbone file, then ``weights``.

    The backbone named by ``model.detector_config.backbone["imagenet_weights"]``
    (``True``: the shipped ImageNet file; a path: that file) is loaded first,
    then ``weights`` (as :func:`load_into` takes them).  Nothing is read when
    neither is set -- and callers that overwrite every weight anyway (a resumed
    run, a checkpoint) build with ``DetectorModel(config)`` and skip this.
    """
    backbone = model.detector_config.backbone.get("imagenet_weights", False)
    if backbone:
        load_into(model, "imagenet" if backbone is True else backbone)
    if weights is not None:
        load_into(model, weights)


def build_model(config, weights=None) -> DetectorModel:
    """Build the detector for ``config`` (a DetectorConfig or a preset name), with its weights.

    Building (``DetectorModel(config)``, also what ``keras.saving.load_model`` does)
    never loads weights; this function then loads, in order, the backbone named
    by ``config.backbone["imagenet_weights"]`` (``True``: the shipped ImageNet
    file for MobileNet presets; a path: that file) and ``weights``
    (:func:`load_initial_weights`).

    Args:
        config: :class:`~ssd_keras.config.DetectorConfig` or preset name
            (``"ssd300_voc"``, ...).
        weights: ``None`` (random init), ``"imagenet"`` (the ImageNet backbone:
            shipped with the package for MobileNet presets, keras.applications'
            VGG16 for the VGG presets) or a weights file, as :func:`load_into`
            takes it (a backbone-only file is matched by layer name and a report
            printed).
    """
    if isinstance(config, str):
        config = presets.get(config)
    model = DetectorModel(config)
    load_initial_weights(model, weights)
    return model

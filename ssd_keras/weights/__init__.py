"""Detector weights: loading by layer name, legacy files, ImageNet backbones, the manifest hub.

One module per idea, imported one way (``cli -> hub -> loading -> legacy ->
by_name``; loading and legacy use :mod:`ssd_keras.models`, which never import
this package):

* :mod:`~ssd_keras.weights.by_name` -- :func:`load_layer_weights`: arrays set
  by layer name, with a report (:func:`format_load_report`);
* :mod:`~ssd_keras.weights.legacy` -- Keras-2 layout ``.h5`` files
  (keras.applications downloads, the shipped backbone, the original ssd_keras
  port): :func:`read_layer_h5`, :func:`load_legacy_h5`;
* :mod:`~ssd_keras.weights.loading` -- :func:`load_into`, the one entry point
  (``"imagenet"``, ``.h5``, ``.weights.h5``, ``.keras``), and a new model's
  starting weights (:func:`load_initial_weights`, :func:`build_model`);
* :mod:`~ssd_keras.weights.hub` -- the sha256-checked manifest:
  :func:`fetch`, :func:`register_weights`, :func:`read_manifest`;
* :mod:`~ssd_keras.weights.cli` -- ``python -m ssd_keras weights ...``.

The VGG16 fc-reduction surgery (:func:`reduce_vgg16_weights`,
:func:`vgg16_arrays_to_ssd`) lives with the VGG16 builder in
:mod:`ssd_keras.models.vgg` and is re-exported here.
"""
from ssd_keras.models.vgg import reduce_vgg16_weights, vgg16_arrays_to_ssd  # noqa: F401
from ssd_keras.weights.by_name import format_load_report, load_layer_weights  # noqa: F401
from ssd_keras.weights.hub import (  # noqa: F401
    DEFAULT_MANIFEST, WEIGHT_FORMATS, UnverifiedWeightsError, default_cache_dir, fetch,
    read_manifest, register_weights)
from ssd_keras.weights.legacy import load_legacy_h5, read_layer_h5  # noqa: F401
from ssd_keras.weights.loading import (  # noqa: F401
    MOBILENET_V2_ARCHITECTURES, VGG16_IMAGENET_URL, build_model, imagenet_backbone_file,
    load_initial_weights, load_into, load_vgg16_imagenet, load_weights_h5, set_vgg16_base)

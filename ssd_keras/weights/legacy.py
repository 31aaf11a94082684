"""Keras-2 layout HDF5 files (weights keyed by layer name) and the original ssd_keras port's.

The layout of keras.applications' weight downloads
(``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``,
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``), of the backbone shipped
in :mod:`ssd_keras.pretrained`, and of the original ssd_keras port's files:
one group per layer (``conv1_1 .. conv9_2``, ``conv4_3_norm``, ``*_mbox_conf``,
``*_mbox_loc``), a ``layer_names`` attribute, per-layer ``weight_names``;
whole-model files put them under a ``model_weights`` group.  So the published
SSD300/SSD512 VOC weights load into :class:`~ssd_keras.SSDModel`.
"""
from __future__ import annotations

import os

import numpy as np

from ssd_keras.models.vgg import vgg16_arrays_to_ssd
from ssd_keras.weights.by_name import load_layer_weights


def _legacy_groups(h5):
    """The group holding per-layer weight groups in a Keras-2 ``.h5`` file, and their names."""
    root = h5["model_weights"] if "model_weights" in h5 else h5
    names = root.attrs.get("layer_names")
    if names is None:
        names = list(root.keys())
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return root, names


def _layer_arrays(group):
    """Weight arrays of one layer group, in the order of its ``weight_names`` attribute."""
    wnames = group.attrs.get("weight_names")
    if wnames is None:  # collect datasets depth-first
        arrays = []
        group.visititems(lambda n, obj: arrays.append(np.asarray(obj)) if hasattr(obj, "shape") else None)
        return arrays
    wnames = [n.decode() if isinstance(n, bytes) else str(n) for n in wnames]
    return [np.asarray(group[n]) for n in wnames]


def read_layer_h5(path) -> dict:
    """``{layer_name: [arrays]}`` of a Keras-2 layout HDF5 file (weights keyed by layer name).

    Layers without weights are left out (see the module docstring for the files).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    out = {}
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 weights file ({error})") from None
    with h5:
        root, names = _legacy_groups(h5)
        for name in names:
            if name in root:
                arrays = _layer_arrays(root[name])
                if arrays:
                    out[name] = arrays
    return out


def load_legacy_h5(model, path, skip_mismatch=False, verbose=True) -> dict:
    """Load a Keras-2 layout ``.h5`` weights or model file into ``model`` by layer name.

    Reads the file with :func:`read_layer_h5`.  A keras.applications VGG16 file
    (``block1_conv1``, ..., ``fc1``, ``fc2``) loaded into an ``ssd_vgg16`` model
    goes through :func:`~ssd_keras.models.vgg.vgg16_arrays_to_ssd` (names mapped,
    fc1 / fc2 reduced to fc6 / fc7).

    Returns:
        the :func:`~ssd_keras.weights.by_name.load_layer_weights` report.
    """
    arrays = read_layer_h5(path)
    config = getattr(model, "detector_config", None)
    if config is not None and config.architecture == "ssd_vgg16" and "block1_conv1" in arrays:
        arrays = vgg16_arrays_to_ssd(arrays)
    return load_layer_weights(model, arrays, os.path.basename(os.fspath(path)),
                              skip_mismatch=skip_mismatch, verbose=verbose)

"""Weights: the reduced-VGG16 ImageNet base, legacy ssd_keras ``.h5`` import, loading dispatch.

* :func:`reduce_vgg16_weights` turns ``keras.applications.VGG16(include_top=True)``
  weights into the SSD base exactly as the Caffe ``VGG_ILSVRC_16_layers_fc_reduced``
  model did: ``fc6`` (``7*7*512 -> 4096``) becomes 1024 filters of ``3x3x512``
  by keeping every 4th filter and every 3rd spatial tap (the 3x3 kernel is then
  applied with dilation 6 after the stride-1 ``pool5``); ``fc7`` (``4096 x
  4096``) becomes ``1024 x 1024`` by keeping every 4th input and output.
* :func:`load_legacy_h5` reads Keras-2 files of the original ssd_keras port
  (layer groups ``conv1_1 .. conv9_2``, ``conv4_3_norm``, ``*_mbox_conf``,
  ``*_mbox_loc``; whole-model files with a ``model_weights`` group too), so the
  published SSD300/SSD512 VOC weights load into :class:`~ssd_keras.SSDModel`.
"""
from __future__ import annotations

import os

import numpy as np

# keras.applications VGG16 layer -> SSD layer
_VGG_CONV_NAMES = {f"block{b}_conv{i}": f"conv{b}_{i}"
                   for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)}


def reduce_vgg16_weights(vgg16) -> dict:
    """SSD base weights from a ``keras.applications.VGG16(include_top=True)`` model.

    Returns:
        ``{ssd_layer_name: [kernel, bias]}`` for ``conv1_1 .. conv5_3``, ``fc6``
        (kernel ``(3, 3, 512, 1024)``) and ``fc7`` (kernel ``(1, 1, 1024, 1024)``).
    """
    out = {}
    for src, dst in _VGG_CONV_NAMES.items():
        out[dst] = [np.asarray(w) for w in vgg16.get_layer(src).get_weights()]
    fc1_w, fc1_b = vgg16.get_layer("fc1").get_weights()      # (25088, 4096): flatten of (7, 7, 512)
    fc2_w, fc2_b = vgg16.get_layer("fc2").get_weights()      # (4096, 4096)
    if fc1_w.shape != (7 * 7 * 512, 4096) or fc2_w.shape != (4096, 4096):
        raise ValueError(f"expected VGG16 fc1 (25088, 4096) and fc2 (4096, 4096), got "
                         f"{fc1_w.shape} and {fc2_w.shape}: build VGG16 with include_top=True")
    fc6 = fc1_w.reshape(7, 7, 512, 4096)[::3, ::3, :, ::4]   # (3, 3, 512, 1024)
    out["fc6"] = [np.ascontiguousarray(fc6), fc1_b[::4].copy()]
    fc7 = fc2_w[::4, ::4].reshape(1, 1, 1024, 1024)
    out["fc7"] = [np.ascontiguousarray(fc7), fc2_b[::4].copy()]
    return out


def set_vgg16_base(model, reduced: dict) -> None:
    """Copy :func:`reduce_vgg16_weights` output into an SSD VGG16 model (by layer name)."""
    for name, weights in reduced.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise ValueError(f"layer {name}: weight shapes {got} do not fit the model's {expected}")
        layer.set_weights(weights)


def load_vgg16_imagenet(model) -> None:
    """Initialise the base of an SSD VGG16 model from ImageNet VGG16 (downloads once)."""
    import keras

    vgg = keras.applications.VGG16(include_top=True, weights="imagenet")
    set_vgg16_base(model, reduce_vgg16_weights(vgg))


def _legacy_groups(h5):
    """The group holding per-layer weight groups in a Keras-2 ``.h5`` file."""
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


def load_legacy_h5(model, path, skip_mismatch=False, verbose=True) -> dict:
    """Load a legacy ssd_keras (Keras 2) ``.h5`` weights or model file by layer name.

    Args:
        model: an :class:`~ssd_keras.SSDModel` (``ssd_vgg16`` architecture).
        path: the ``.h5`` file.
        skip_mismatch: skip layers whose shapes differ (e.g. class heads of a
            model trained with another class count) instead of raising.

    Returns:
        ``{"loaded": [names], "skipped": [names], "missing": [model layers with
        weights that the file lacks]}``.
    """
    import h5py

    if not os.path.exists(path):
        raise FileNotFoundError(f"legacy weights file not found: {path}")
    loaded, skipped = [], []
    with h5py.File(path, "r") as h5:
        root, names = _legacy_groups(h5)
        for name in names:
            if name not in root:
                continue
            arrays = _layer_arrays(root[name])
            if not arrays:
                continue
            try:
                layer = model.get_layer(name)
            except ValueError:
                skipped.append(name)
                continue
            expected = [tuple(w.shape) for w in layer.get_weights()]
            got = [tuple(a.shape) for a in arrays]
            if expected != got:
                if skip_mismatch:
                    skipped.append(name)
                    continue
                raise ValueError(f"{path}: layer {name} has weights {got}, the model expects "
                                 f"{expected} (different class count? use skip_mismatch=True)")
            layer.set_weights(arrays)
            loaded.append(name)
    missing = [l.name for l in model.layers if l.weights and l.name not in loaded
               and l.name not in skipped]
    if verbose:
        print(f"legacy weights {os.path.basename(path)}: {len(loaded)} layers loaded, "
              f"{len(skipped)} skipped, {len(missing)} model layers without weights in the file")
    return {"loaded": loaded, "skipped": skipped, "missing": missing}


def load_into(model, weights) -> None:
    """Load ``weights`` into ``model``: ``"imagenet"``, a ``.weights.h5``, a legacy ``.h5`` or a ``.keras``."""
    if weights == "imagenet":
        if model.detector_config.architecture == "ssd_vgg16":
            load_vgg16_imagenet(model)
            return
        raise ValueError(f"{model.detector_config.architecture}: ImageNet weights are loaded by "
                         f"the builder; set backbone={{'imagenet_weights': True}} in the config")
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    elif path.endswith(".keras"):
        import keras
        src = keras.saving.load_model(path, compile=False)
        model.set_weights(src.get_weights())
    elif path.endswith((".h5", ".hdf5")):
        load_legacy_h5(model, path)
    else:
        raise ValueError(f"{path}: unknown weights format (expected .weights.h5, .keras or legacy .h5)")

"""ImageNet backbones shipped inside the package, and the converter that made them.

The shipped file is package data (installed by a plain ``pip install .``), so
``"imagenet"`` for a MobileNet preset needs no network:

``mobilenet_v2_1.0_224_imagenet_no_top.h5`` (9 MB, 2,257,984 parameters)
    ``keras.applications.MobileNetV2(alpha=1.0, include_top=False)`` ImageNet
    weights, converted by :func:`convert_mobilenet_v2` from the per-layer arrays
    of the TF-slim checkpoint ``mobilenet_v2_1.0_224`` (71.8 % top-1; Apache-2.0,
    tensorflow/models) as JonathanCMitchell/mobilenet_v2_keras (MIT) extracted
    them.  Registered with its sha256 in ``manifest.json`` beside it
    (``mobilenet_v2_1.0_imagenet_no_top``); see ``weights/README.md``.

File layout: the Keras-2 HDF5 weights layout that keras.applications' own
downloads use -- one group per layer named after the Keras layer, a
``layer_names`` attribute, per-layer ``weight_names`` (``Conv1/kernel:0``,
``bn_Conv1/gamma:0``, ...).  Because weights are keyed by *layer name*, the file
loads into the backbone layers of an SSD model (which are built flat, under
the keras.applications names) with :func:`ssd_keras.weights.load_legacy_h5`
or ``load_into(model, path)``, and it is also a drop-in for
``keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=PATH)``.
(A Keras 3 ``.weights.h5`` is keyed by layer class and position, not by name,
so it could not serve a model that merely contains the backbone.)
"""
from __future__ import annotations

import os

import numpy as np

#: the shipped ImageNet MobileNetV2 1.0 backbone (file name inside this package)
MOBILENET_V2_IMAGENET = "mobilenet_v2_1.0_224_imagenet_no_top.h5"
#: parameters of ``keras.applications.MobileNetV2(alpha=1.0, include_top=False)``
MOBILENET_V2_PARAMS = 2_257_984

_BN_ARRAYS = ("gamma", "beta", "moving_mean", "moving_variance")   # Keras order


def shipped_path(filename: str = MOBILENET_V2_IMAGENET) -> str:
    """Absolute path of a weights file shipped in this package (FileNotFoundError if absent)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"shipped weights file missing: {path} (reinstall ssd_keras, or "
                                f"rebuild it: python -m ssd_keras weights convert-mobilenet-v2 "
                                f"--npy DIR --out {path})")
    return path


def mobilenet_v2_slim_names() -> dict:
    """Keras layer -> TF-slim array prefix, for every MobileNetV2 1.0 layer with weights.

    Convolutions map to ``<prefix>_weights`` (``<prefix>_depthwise_weights`` for
    the depthwise ones), batch norms to ``<prefix>_BatchNorm_{gamma,beta,moving_mean,
    moving_variance}``.  Blocks: TF-slim ``expanded_conv`` (no expansion) is Keras
    ``expanded_conv_*``; ``expanded_conv_{i}`` is ``block_{i}``, i = 1..16.
    """
    names = {"Conv1": "Conv", "bn_Conv1": "Conv",
             "expanded_conv_depthwise": "expanded_conv_depthwise",
             "expanded_conv_depthwise_BN": "expanded_conv_depthwise",
             "expanded_conv_project": "expanded_conv_project",
             "expanded_conv_project_BN": "expanded_conv_project"}
    for i in range(1, 17):
        for part in ("expand", "depthwise", "project"):
            names[f"block_{i}_{part}"] = f"expanded_conv_{i}_{part}"
            names[f"block_{i}_{part}_BN"] = f"expanded_conv_{i}_{part}"
    names.update({"Conv_1": "Conv_1", "Conv_1_bn": "Conv_1"})
    return names


def mobilenet_v2_backbone(input_shape=(224, 224, 3)):
    """``keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=None)``."""
    import keras

    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=1.0, include_top=False,
                                          weights=None)


def slim_arrays_for_layer(npy_dir, layer) -> list:
    """The TF-slim ``.npy`` arrays of one Keras MobileNetV2 layer, in the layer's weight order."""
    prefix = mobilenet_v2_slim_names()[layer.name]
    if layer.__class__.__name__ == "BatchNormalization":
        files = [f"{prefix}_BatchNorm_{name}.npy" for name in _BN_ARRAYS]
    elif layer.__class__.__name__ == "DepthwiseConv2D":
        files = [f"{prefix}_depthwise_weights.npy"]
    else:
        files = [f"{prefix}_weights.npy"]
    arrays = []
    for filename in files:
        path = os.path.join(os.fspath(npy_dir), filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing (layer {layer.name}); expected the TF-slim "
                                    f"mobilenet_v2_1.0_224 arrays as JonathanCMitchell/"
                                    f"mobilenet_v2_keras extracts them")
        arrays.append(np.load(path).astype("float32"))
    return arrays


def write_layer_weights_h5(path, layers) -> None:
    """Write ``[(layer_name, [(weight_name, array), ...]), ...]`` in the Keras-2 HDF5 layout.

    The layout keras.applications' weight files have (``layer_names`` attribute,
    one group per layer with ``weight_names``), readable by
    :func:`ssd_keras.weights.load_legacy_h5` and by ``keras.Model.load_weights``
    of a model with the same layers.  Written to ``path + ".part"``, then renamed.
    """
    import h5py
    import keras

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with h5py.File(path + ".part", "w") as h5:
        h5.attrs["layer_names"] = [name.encode("utf8") for name, _ in layers]
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["keras_version"] = str(keras.__version__).encode("utf8")
        for name, weights in layers:
            group = h5.create_group(name)
            wnames = [f"{name}/{wname}:0" for wname, _ in weights]
            group.attrs["weight_names"] = [n.encode("utf8") for n in wnames]
            for wname, (_, value) in zip(wnames, weights):
                group.create_dataset(wname, data=value)
    os.replace(path + ".part", path)


def convert_mobilenet_v2(npy_dir, out) -> dict:
    """Convert the TF-slim MobileNetV2 1.0 arrays into a by-layer-name HDF5 weights file.

    Every array is set on ``keras.applications.MobileNetV2(alpha=1.0,
    include_top=False)`` (so shapes are checked by Keras itself), the parameter
    count is checked against :data:`MOBILENET_V2_PARAMS`, and the model's
    weights are written with :func:`write_layer_weights_h5`.

    Args:
        npy_dir: folder of ``Conv_weights.npy``, ``expanded_conv_1_expand_weights.npy``, ...
        out: the ``.h5`` file to write.

    Returns:
        ``{"path", "layers", "parameters", "sha256", "size"}``.
    """
    from ssd_keras.data.download import file_digest

    if not os.path.isdir(os.fspath(npy_dir)):
        raise FileNotFoundError(f"{npy_dir}: not a folder of TF-slim MobileNetV2 .npy arrays")
    if not os.fspath(out).endswith(".h5") or os.fspath(out).endswith(".weights.h5"):
        raise ValueError(f"{out}: the output is a Keras-2 layout HDF5 file keyed by layer name; "
                         f"name it *.h5 (not *.weights.h5, which Keras reads by position)")
    net = mobilenet_v2_backbone()
    layers = []
    for layer in net.layers:
        if not layer.weights:
            continue
        arrays = slim_arrays_for_layer(npy_dir, layer)
        expected = [tuple(v.shape) for v in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise ValueError(f"{npy_dir}: layer {layer.name} arrays have shapes "
                             f"{[a.shape for a in arrays]}, MobileNetV2 1.0 expects {expected}")
        layer.set_weights(arrays)
        layers.append((layer.name, [(v.name, np.asarray(v.numpy())) for v in layer.weights]))
    parameters = int(net.count_params())
    if parameters != MOBILENET_V2_PARAMS:
        raise ValueError(f"converted MobileNetV2 has {parameters:,} parameters, expected "
                         f"{MOBILENET_V2_PARAMS:,}")
    write_layer_weights_h5(out, layers)
    return {"path": os.fspath(out), "layers": len(layers), "parameters": parameters,
            "sha256": file_digest(os.fspath(out), "sha256"), "size": os.path.getsize(out)}

"""Weights: loading by layer name (with a report), ImageNet backbones, the weights manifest.

* :func:`load_into` is the one entry point (``build_model(config, weights=...)``,
  ``train --weights``): ``"imagenet"`` (for MobileNet presets the backbone shipped
  in :mod:`ssd_keras.pretrained`, offline), a backbone-only or whole-model file.
  Backbone files are matched by layer name by :func:`load_layer_weights`, which
  returns (and prints) what was loaded, skipped, mismatched and left initial.
* :func:`reduce_vgg16_weights` turns ``keras.applications.VGG16(include_top=True)``
  weights into the SSD base exactly as the Caffe ``VGG_ILSVRC_16_layers_fc_reduced``
  model did: ``fc6`` (``7*7*512 -> 4096``) becomes 1024 filters of ``3x3x512``
  by keeping every 4th filter and every 3rd spatial tap (the 3x3 kernel is then
  applied with dilation 6 after the stride-1 ``pool5``); ``fc7`` (``4096 x
  4096``) becomes ``1024 x 1024`` by keeping every 4th input and output.
* :func:`load_legacy_h5` reads Keras-2 layout files by layer name: keras.applications'
  weight files (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, ...; VGG16
  names are mapped onto the SSD base), the shipped backbone, and the original
  ssd_keras port's files (layer groups ``conv1_1 .. conv9_2``, ``conv4_3_norm``,
  ``*_mbox_conf``, ``*_mbox_loc``; whole-model files with a ``model_weights``
  group too), so the published SSD300/SSD512 VOC weights load into
  :class:`~ssd_keras.SSDModel`.  :func:`load_weights_h5` reads Keras 3
  ``.weights.h5`` files: the model's own, or a keras.applications backbone's.
* :func:`fetch` downloads a checkpoint listed in ``ssd_keras/pretrained/manifest.json`` into a
  cache with its SHA-256 checked (and loads it into its preset);
  :func:`register_weights` and ``python -m ssd_keras weights register`` add a
  training run's file to the manifest (see ``weights/README.md``).
"""
from __future__ import annotations

import os

import numpy as np

from ssd_keras.io_utils import write_json

#: where keras.applications downloads the ImageNet VGG16 (with the top, 528 MB) from
VGG16_IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                      "vgg16_weights_tf_dim_ordering_tf_kernels.h5")

# keras.applications VGG16 layer -> SSD layer
_VGG_CONV_NAMES = {f"block{b}_conv{i}": f"conv{b}_{i}"
                   for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)}


def reduce_vgg16_weights(vgg16) -> dict:
    """SSD base weights from a ``keras.applications.VGG16(include_top=True)`` model.

    Returns:
        ``{ssd_layer_name: [kernel, bias]}`` for ``conv1_1 .. conv5_3``, ``fc6``
        (kernel ``(3, 3, 512, 1024)``) and ``fc7`` (kernel ``(1, 1, 1024, 1024)``).
    """
    names = [*_VGG_CONV_NAMES, "fc1", "fc2"]
    try:
        arrays = {name: [np.asarray(w) for w in vgg16.get_layer(name).get_weights()]
                  for name in names}
    except ValueError as error:
        raise ValueError(f"{error}: build VGG16 with include_top=True") from None
    # fc1 (25088, 4096) is the flatten of (7, 7, 512) -> fc6 (3, 3, 512, 1024)
    return vgg16_arrays_to_ssd(arrays)


def set_vgg16_base(model, reduced: dict) -> None:
    """Copy :func:`reduce_vgg16_weights` output into an SSD VGG16 model (by layer name)."""
    report = load_layer_weights(model, reduced, "reduced VGG16 base", verbose=False)
    if report["skipped"]:
        raise ValueError(f"reduced VGG16 base: {model.name} has no layer "
                         f"{', '.join(report['skipped'])}")


def vgg16_arrays_to_ssd(layer_arrays: dict) -> dict:
    """keras.applications VGG16 arrays ``{block1_conv1: [k, b], ..., fc1, fc2}`` -> SSD names.

    ``blockB_convI`` becomes ``convB_I``; ``fc1`` / ``fc2`` (a file with the top)
    are reduced to ``fc6`` / ``fc7`` as :func:`reduce_vgg16_weights` does; the
    classifier ``predictions`` is dropped.  A ``notop`` file has no ``fc1`` / ``fc2``:
    ``fc6`` / ``fc7`` then keep their initialisation (the load report lists them
    as missing).  Other names pass through unchanged.
    """
    out = {}
    for name, arrays in layer_arrays.items():
        if name == "predictions":
            continue
        out[_VGG_CONV_NAMES.get(name, name)] = arrays
    if "fc1" in out and "fc2" in out:
        (fc1_w, fc1_b), (fc2_w, fc2_b) = out.pop("fc1"), out.pop("fc2")
        if fc1_w.shape != (7 * 7 * 512, 4096) or fc2_w.shape != (4096, 4096):
            raise ValueError(f"expected VGG16 fc1 (25088, 4096) and fc2 (4096, 4096), got "
                             f"{fc1_w.shape} and {fc2_w.shape}")
        out["fc6"] = [np.ascontiguousarray(fc1_w.reshape(7, 7, 512, 4096)[::3, ::3, :, ::4]),
                      fc1_b[::4].copy()]
        out["fc7"] = [np.ascontiguousarray(fc2_w[::4, ::4].reshape(1, 1, 1024, 1024)),
                      fc2_b[::4].copy()]
    return out


def load_vgg16_imagenet(model, verbose=True) -> dict:
    """Initialise the base of an SSD VGG16 model from ImageNet VGG16 (keras.applications).

    Keras downloads the 528 MB file once into ``~/.keras/models`` (then it is
    read from there).  Offline, give the file itself: ``load_into(model,
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5")`` (or the ``_notop`` file,
    which lacks fc6 / fc7).  Returns the :func:`load_layer_weights` report.
    """
    import keras

    try:
        vgg = keras.applications.VGG16(include_top=True, weights="imagenet")
    except Exception as error:   # Keras raises a bare Exception for a failed download
        raise OSError(f"{model.name}: the ImageNet VGG16 weights could not be downloaded "
                      f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                      f"download {VGG16_IMAGENET_URL} elsewhere and pass the file: "
                      f"--weights PATH (or load_into(model, PATH))") from None
    return load_layer_weights(model, reduce_vgg16_weights(vgg), "keras.applications VGG16 ImageNet",
                              verbose=verbose)


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


def read_layer_h5(path) -> dict:
    """``{layer_name: [arrays]}`` of a Keras-2 layout HDF5 file (weights keyed by layer name).

    The layout of keras.applications' weight files (``mobilenet_v2_weights_tf_dim_
    ordering_tf_kernels_1.0_224_no_top.h5``, ``vgg16_weights_tf_dim_ordering_tf_
    kernels_notop.h5``), of the shipped backbone (:mod:`ssd_keras.pretrained`) and
    of the original ssd_keras port's files (whole-model files with a
    ``model_weights`` group too).  Layers without weights are left out.
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


def load_layer_weights(model, layer_arrays: dict, source="weights", skip_mismatch=False,
                       verbose=True) -> dict:
    """Set ``{layer_name: [arrays]}`` on the layers of ``model`` with those names.

    Layers of the file that the model lacks are skipped (e.g. MobileNetV2 blocks
    13-16 when an FPNLite stops at level 4, or a VGG16 classifier); model layers
    the file lacks keep their initial weights (e.g. the detection heads).

    Args:
        model: any built Keras model (an :class:`~ssd_keras.SSDModel`).
        layer_arrays: arrays per layer name, in each layer's ``get_weights()`` order.
        source: what to call the weights in messages (a file name).
        skip_mismatch: skip layers whose shapes differ (e.g. class heads of a
            model trained with another class count) instead of raising.
        verbose: print the one-paragraph report.

    Returns:
        ``{"source", "loaded": [names], "skipped": [file layers not used: absent
        from the model, or mismatched], "mismatched": {name: "file shapes vs model
        shapes"}, "missing": [model layers with weights that the file lacks]}``.

    Raises:
        ValueError: a shape mismatch without ``skip_mismatch`` (naming the layer),
            or no layer of the file matches one of the model (wrong file).
    """
    loaded, skipped, mismatched = [], [], {}
    for name, arrays in layer_arrays.items():
        try:
            layer = model.get_layer(name)
        except ValueError:
            skipped.append(name)
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(np.shape(a)) for a in arrays]
        if expected != got:
            if not skip_mismatch:
                raise ValueError(f"{source}: layer {name} has weights {got}, the model expects "
                                 f"{expected} (another class count or width? use "
                                 f"skip_mismatch=True)")
            skipped.append(name)
            mismatched[name] = f"{got} vs model {expected}"
            continue
        layer.set_weights(arrays)
        loaded.append(name)
    if layer_arrays and not loaded and not mismatched:
        raise ValueError(f"{source}: none of its {len(layer_arrays)} layers "
                         f"({', '.join(list(layer_arrays)[:3])}, ...) is a layer of "
                         f"{model.name}; wrong file for this model?")
    done = set(loaded) | set(mismatched)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in done]
    report = {"source": source, "loaded": loaded, "skipped": skipped, "mismatched": mismatched,
              "missing": missing}
    if verbose:
        print(format_load_report(report), flush=True)
    return report


def format_load_report(report, max_names=12) -> str:
    """The :func:`load_layer_weights` report as a few lines (counts, then names)."""
    def names(items):
        items = list(items)
        more = f", ... (+{len(items) - max_names})" if len(items) > max_names else ""
        return ", ".join(items[:max_names]) + more

    lines = [f"weights {report['source']}: {len(report['loaded'])} layers loaded, "
             f"{len(report['skipped'])} skipped, {len(report['missing'])} model layers not in "
             f"the file (keep their initial weights)"]
    not_in_model = [n for n in report["skipped"] if n not in report["mismatched"]]
    if not_in_model:
        lines.append(f"  skipped, not in the model: {names(not_in_model)}")
    for name, shapes in report["mismatched"].items():
        lines.append(f"  skipped, shape mismatch: {name}: file {shapes}")
    if report["missing"]:
        lines.append(f"  not in the file: {names(report['missing'])}")
    return "\n".join(lines)


def load_legacy_h5(model, path, skip_mismatch=False, verbose=True) -> dict:
    """Load a Keras-2 layout ``.h5`` weights or model file into ``model`` by layer name.

    Reads keras.applications weight files, the shipped ImageNet backbone and the
    original ssd_keras port's files (layer groups ``conv1_1 .. conv9_2``,
    ``conv4_3_norm``, ``*_mbox_conf``, ``*_mbox_loc``) with :func:`read_layer_h5`.
    A keras.applications VGG16 file (``block1_conv1``, ..., ``fc1``, ``fc2``)
    loaded into an ``ssd_vgg16`` model goes through :func:`vgg16_arrays_to_ssd`.

    Returns:
        the :func:`load_layer_weights` report.
    """
    arrays = read_layer_h5(path)
    config = getattr(model, "detector_config", None)
    if config is not None and config.architecture == "ssd_vgg16" and "block1_conv1" in arrays:
        arrays = vgg16_arrays_to_ssd(arrays)
    return load_layer_weights(model, arrays, os.path.basename(os.fspath(path)),
                              skip_mismatch=skip_mismatch, verbose=verbose)


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
    import keras

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
    ``model`` by layer name (VGG16 through :func:`vgg16_arrays_to_ssd`).

    Returns:
        ``None`` for the model's own file (every weight loaded), else the
        :func:`load_layer_weights` report.
    """
    import warnings

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


#: architectures whose ``"imagenet"`` backbone ships in :mod:`ssd_keras.pretrained`
MOBILENET_V2_ARCHITECTURES = ("ssd_mobilenet_v2", "ssd_mobilenet_v2_fpnlite")


def imagenet_backbone_file(config) -> str:
    """The shipped ImageNet backbone file for ``config`` (MobileNetV2 at depth_multiplier 1.0).

    Raises:
        ValueError: another architecture or width (naming what to pass instead).
    """
    from ssd_keras import pretrained

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
      (:func:`load_legacy_h5`): a backbone-only file such as keras.applications'
      ``vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`` or
      ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5``, or
      an old ssd_keras model;
    * a Keras 3 ``.weights.h5``: this model's own weights (``model.save_weights``),
      or those of a keras.applications backbone (``VGG16`` / ``MobileNetV2``
      built with ``weights=None``, then ``save_weights``), matched by layer name;
    * a ``.keras`` model of the same architecture (all weights).

    The report (:func:`load_layer_weights`) names what was loaded, skipped and
    left at its initial value; it is printed unless ``verbose=False``.
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
        import keras
        src = keras.saving.load_model(path, compile=False)
        model.set_weights(src.get_weights())
        return None
    if path.endswith((".h5", ".hdf5")):
        return load_legacy_h5(model, path, skip_mismatch=skip_mismatch, verbose=verbose)
    raise ValueError(f"{path}: unknown weights format (expected .weights.h5, .keras or .h5)")


# --------------------------------------------------------------------------- manifest
#
# ``ssd_keras/pretrained/manifest.json`` (package data, so it is installed with the package)
# lists known checkpoints (see weights/README.md):
#
#     {"description": "...",
#      "entries": [{"name", "url", "sha256", "size", "preset", "format", "metric",
#                   "source", "verified", "note"}, ...]}     # sorted by name
#
# ``fetch`` downloads an entry into the cache with its sha256 checked (through
# :func:`ssd_keras.data.download.download_file`: resumable, atomic) and can load it into
# its preset; ``register_weights`` adds the file of a training run with the sha256
# computed from the file itself.

#: ``format`` -> file name suffix in the cache (it is also what :func:`load_into` dispatches on)
WEIGHT_FORMATS = {"keras": ".keras", "weights.h5": ".weights.h5", "legacy_h5": ".h5"}

#: the package's manifest (``ssd_keras/pretrained/manifest.json``; files it ships lie beside it)
DEFAULT_MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained",
                                "manifest.json")

_ENTRY_FIELDS = ("name", "url", "sha256", "size", "preset", "format", "metric", "source",
                 "verified", "note", "licence")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


class UnverifiedWeightsError(ValueError):
    """A manifest entry without a recorded sha256 was requested without ``allow_unverified``."""


def default_cache_dir() -> str:
    """``$SSD_KERAS_WEIGHTS_DIR``, else ``~/.keras/ssd_keras/weights``."""
    return (os.environ.get("SSD_KERAS_WEIGHTS_DIR")
            or os.path.join(os.path.expanduser("~"), ".keras", "ssd_keras", "weights"))


def _load_manifest_document(manifest, missing_ok=False) -> dict:
    """The manifest as ``{"entries": [...], ...}`` from a path, a dict or a list of entries."""
    import json

    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if isinstance(manifest, (str, os.PathLike)):
        path = os.fspath(manifest)
        if not os.path.exists(path):
            if missing_ok:
                return {"entries": []}
            raise FileNotFoundError(f"weights manifest not found: {path}")
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    if isinstance(manifest, list):
        return {"entries": list(manifest)}
    if isinstance(manifest, dict) and isinstance(manifest.get("entries", []), list):
        return {**manifest, "entries": list(manifest.get("entries", []))}
    raise ValueError("a weights manifest is a JSON object {'entries': [...]} or a list of entries")


def read_manifest(manifest=None) -> dict:
    """``{name: entry}`` of a manifest (a path, a dict ``{"entries": [...]}`` or a list).

    ``None`` reads :data:`DEFAULT_MANIFEST`.
    """
    entries = {}
    for entry in _load_manifest_document(manifest)["entries"]:
        name = entry.get("name")
        if not name:
            raise ValueError(f"weights manifest entry without a name: {entry}")
        if name in entries:
            raise ValueError(f"weights manifest lists {name!r} twice")
        entries[name] = entry
    return entries


def _cache_filename(entry) -> str:
    """``<name><format suffix>``: the suffix tells :func:`load_into` how to read the file."""
    fmt = entry.get("format")
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"{entry['name']}: unknown format {fmt!r}; expected one of "
                         f"{sorted(WEIGHT_FORMATS)}")
    filename = entry["name"] + WEIGHT_FORMATS[fmt]
    if os.path.basename(filename) != filename or filename.startswith("."):
        raise ValueError(f"weights name {entry['name']!r} is not a plain file name")
    return filename


def _check_signature(path, fmt) -> None:
    """Refuse a file that is not HDF5 (``.h5``) / zip (``.keras``): e.g. an HTML page."""
    expected = _ZIP_SIGNATURE if fmt == "keras" else _HDF5_SIGNATURE
    with open(path, "rb") as handle:
        head = handle.read(len(expected))
    if head != expected:
        kind = "zip (.keras)" if fmt == "keras" else "HDF5"
        raise ValueError(f"{path} is not an {kind} file (it starts with {head!r}; a web page? "
                         f"Google Drive links serve an HTML page: download the file in a "
                         f"browser and pass its local path as the URL)")


def _verify_cached(path, sha256) -> None:
    """Check a cached file against ``sha256`` (if known); a mismatching file is deleted."""
    from ssd_keras.data.download import ChecksumError, file_digest

    if sha256:
        actual = file_digest(path, "sha256")
        if actual != sha256.lower():
            os.remove(path)
            raise ChecksumError(f"{os.path.basename(path)}: checksum mismatch: expected sha256 "
                                f"{sha256.lower()}, got {actual}; deleted {path}")


def _install_local(source, dest, sha256, quiet) -> None:
    """Copy a local file into the cache (via ``.part`` + ``os.replace``) after checking its hash."""
    import shutil

    from ssd_keras.data.download import ChecksumError, file_digest

    if os.path.exists(dest) and sha256 and file_digest(dest, "sha256") == sha256.lower():
        if not quiet:
            print(f"{os.path.basename(dest)}: already in the cache and verified", flush=True)
        return
    if sha256:
        actual = file_digest(source, "sha256")
        if actual != sha256.lower():
            raise ChecksumError(f"{source}: checksum mismatch: expected sha256 {sha256.lower()}, "
                                f"got {actual}; not copied into the cache")
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    shutil.copyfile(source, dest + ".part")
    os.replace(dest + ".part", dest)


def fetch(name, cache_dir=None, manifest=None, allow_unverified=False, load=True, *,
          url=None, mirror=None, quiet=False, timeout=60.0):
    """Download (or find in the cache) the manifest entry ``name``, checking its sha256.

    Args:
        name: entry name in the manifest.
        cache_dir: where weights are kept (default :func:`default_cache_dir`); the
            file is ``<cache_dir>/<name><suffix of its format>``.
        manifest: path, dict or list of entries (default :data:`DEFAULT_MANIFEST`).
        allow_unverified: accept an entry whose sha256 is unknown (``null``); the
            sha256 of what was downloaded is printed so it can be recorded.
        load: build the entry's preset and load the weights into it.
        url: source overriding the entry's URL: an ``http(s)://`` URL or a local
            file path (e.g. a file downloaded by hand from Google Drive).
        mirror: base URL serving the cache file name (``<mirror>/<name><suffix>``).
        quiet: no progress output.

    Returns:
        The cached file's path, or with ``load=True`` the
        :class:`~ssd_keras.SSDModel` of ``presets.get(entry["preset"])`` holding
        the weights.

    Raises:
        KeyError: unknown name.
        UnverifiedWeightsError: the entry has no sha256 and ``allow_unverified`` is False.
        ssd_keras.data.download.ChecksumError: the file's sha256 differs (the
            downloaded file is deleted, never left in the cache).
    """
    from ssd_keras.data.download import download_file, file_digest

    entries = read_manifest(manifest)
    if name not in entries:
        raise KeyError(f"no weights named {name!r} in the manifest; known: "
                       f"{', '.join(sorted(entries)) or '(none)'}")
    entry = entries[name]
    sha256 = entry.get("sha256")
    if not sha256 and not allow_unverified:
        raise UnverifiedWeightsError(
            f"{name}: the manifest records no sha256 for this file "
            f"({entry.get('note') or 'unverified'}); pass allow_unverified=True "
            f"(CLI: --allow-unverified) to use it anyway")
    filename = _cache_filename(entry)
    dest = os.path.join(os.fspath(cache_dir or default_cache_dir()), filename)
    source = url or (mirror.rstrip("/") + "/" + filename if mirror else entry.get("url"))
    if (source and not url and not mirror and "://" not in source and not os.path.isabs(source)
            and (manifest is None or isinstance(manifest, (str, os.PathLike)))):
        # a relative path written in a manifest file is relative to that file's folder
        source = os.path.join(os.path.dirname(os.path.abspath(manifest or DEFAULT_MANIFEST)), source)
    if not source:  # e.g. a registered local run: only a file already in the cache can serve
        if not os.path.exists(dest):
            raise ValueError(f"{name}: the manifest gives no URL; pass url= (a URL or a local "
                             f"file) or mirror=, or put the file at {dest}")
        _verify_cached(dest, sha256)
    elif "://" not in source or source.startswith("file://"):
        _install_local(source[len("file://"):] if source.startswith("file://") else source,
                       dest, sha256, quiet)
    else:
        download_file(source, dest, sha256=sha256, expected_size=entry.get("size"),
                      quiet=quiet, timeout=timeout)
    try:
        _check_signature(dest, entry["format"])
    except ValueError:
        if not sha256:  # an unverified download that is not even the right kind of file
            os.remove(dest)
        raise
    if not sha256:
        print(f"{name}: UNVERIFIED weights {dest}: sha256 {file_digest(dest, 'sha256')}, "
              f"{os.path.getsize(dest)} bytes -- record the sha256 in the manifest once the "
              f"file is known to be right", flush=True)
    if not load:
        return dest
    import importlib

    from ssd_keras import presets
    from ssd_keras.models.base import build_model

    if entry.get("preset_module"):  # presets registered outside ssd_keras.presets
        importlib.import_module(entry["preset_module"])
    model = build_model(presets.get(entry["preset"]))
    if entry["format"] == "legacy_h5":
        load_legacy_h5(model, dest, verbose=not quiet)
    else:
        load_into(model, dest)
    return model


def _format_of(path) -> str:
    for fmt, suffix in sorted(WEIGHT_FORMATS.items(), key=lambda item: -len(item[1])):
        if path.endswith(suffix):
            return fmt
    if path.endswith(".hdf5"):
        return "legacy_h5"
    raise ValueError(f"{path}: unknown weights format (expected .weights.h5, .keras or legacy .h5)")


def register_weights(path, name, preset, metric=None, source=None, url=None,
                     manifest_path=None, note=None, format=None, licence=None) -> dict:
    """Add (or replace) the manifest entry ``name`` for the weights file ``path``.

    The sha256 and size are computed from the file, so the entry is
    ``verified: true``.  The manifest is rewritten atomically with its entries
    sorted by name; other entries and top-level keys are kept.

    Args:
        path: a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file (e.g. a training
            run's best checkpoint).
        name: entry name (also the cache file's stem).
        preset: the preset the weights belong to (must be registered now, so that
            :func:`fetch` can build it; a preset registered by another module
            records that module as ``preset_module``).
        metric: e.g. ``{"VOC2007 test mAP (11-point)": 0.771}``.
        source: where the file came from (default: ``"registered from <path>"``).
        url: where it can be downloaded (``None``: only from a cache or a
            ``url=`` given to :func:`fetch`).
        manifest_path: default :data:`DEFAULT_MANIFEST`.
        note: free text.
        format: ``"keras" | "weights.h5" | "legacy_h5"`` (default: from the suffix).
        licence: the file's licence and its origin's (e.g. ``"Apache-2.0 (TF models)"``).

    Returns:
        The entry written.
    """
    from ssd_keras import presets
    from ssd_keras.data.download import file_digest

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    fmt = format or _format_of(path)
    entry = {"name": name, "format": fmt}
    _cache_filename(entry)  # validates the name and the format
    _check_signature(path, fmt)
    presets.get(preset)  # KeyError listing the known presets
    # the factory's module, when it is not ssd_keras.presets, must be imported to rebuild it
    factory = getattr(presets, "_PRESETS", {}).get(preset)
    factory_module = getattr(factory, "__module__", presets.__name__)
    entry.update({
        "url": url,
        "sha256": file_digest(path, "sha256"),
        "size": os.path.getsize(path),
        "preset": preset,
        "metric": metric,
        "source": source or f"registered from {path}",
        "verified": True,
        "note": note or ("sha256 computed from the file by register_weights"
                         + ("" if url else "; no download URL: fetch() finds it in the cache "
                            "or takes url= / --url")),
    })
    if licence:
        entry["licence"] = licence
    if factory_module not in (presets.__name__, "__main__"):
        entry["preset_module"] = factory_module
    entry = {key: entry[key] for key in (*_ENTRY_FIELDS, "preset_module") if key in entry}
    manifest_path = os.fspath(manifest_path or DEFAULT_MANIFEST)
    document = _load_manifest_document(manifest_path, missing_ok=True)
    entries = [e for e in document["entries"] if e.get("name") != name] + [entry]
    document["entries"] = sorted(entries, key=lambda e: e["name"])
    write_json(manifest_path, document)
    return entry


# --------------------------------------------------------------------------- CLI

def _metric_from_argument(value):
    """``--metric-json``: a JSON file path or an inline JSON object."""
    import json

    if value is None:
        return None
    if value.lstrip().startswith("{"):
        return json.loads(value)
    with open(value, encoding="utf-8") as handle:
        return json.load(handle)


def _run_list(args) -> int:
    cache_dir = args.cache_dir or default_cache_dir()
    entries = read_manifest(args.manifest)
    if not entries:
        print("no weights in the manifest")
        return 0
    for name, entry in sorted(entries.items()):
        try:
            cached = os.path.exists(os.path.join(cache_dir, _cache_filename(entry)))
        except ValueError:
            cached = False
        metric = ", ".join(f"{k} {v}" for k, v in (entry.get("metric") or {}).items()) or "-"
        print(f"{name}  preset={entry.get('preset')}  format={entry.get('format')}  "
              f"{'verified' if entry.get('verified') else 'UNVERIFIED'}"
              f"{'  cached' if cached else ''}  metric: {metric}")
    return 0


def _run_fetch(args) -> int:
    result = fetch(args.name, cache_dir=args.cache_dir, manifest=args.manifest,
                   allow_unverified=args.allow_unverified, load=args.load, url=args.url,
                   mirror=args.mirror)
    if args.load:
        print(f"{args.name}: loaded into a {result.detector_config.name} model "
              f"({result.count_params():,} parameters)")
    else:
        print(result)
    return 0


def _run_register(args) -> int:
    import json

    entry = register_weights(args.path, args.name, args.preset,
                             metric=_metric_from_argument(args.metric_json), source=args.source,
                             url=args.url, manifest_path=args.manifest, note=args.note,
                             format=args.format, licence=args.licence)
    print(json.dumps(entry, indent=2))
    return 0


def _run_convert_mobilenet_v2(args) -> int:
    import json

    from ssd_keras import pretrained

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(pretrained.__file__)),
                                   pretrained.MOBILENET_V2_IMAGENET)
    print(json.dumps(pretrained.convert_mobilenet_v2(args.npy, out), indent=2))
    return 0


def run_weights(args) -> int:
    """``weights`` command: dispatch to list / fetch / register; errors -> exit status 1."""
    import sys

    if not getattr(args, "action", None):
        args.parser.print_help()
        return 2
    try:
        return args.action(args)
    except (OSError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"weights {args.weights_command} failed: {message}", file=sys.stderr, flush=True)
        return 1


def register(subparsers):
    """Add the ``weights`` command (``list``, ``fetch NAME``, ``register PATH``,
    ``convert-mobilenet-v2 --npy DIR``)."""
    parser = subparsers.add_parser(
        "weights", help="list, fetch (sha256-checked, cached) and register detector weights",
        description="Known checkpoints live in ssd_keras/pretrained/manifest.json "
                    "(see weights/README.md).")
    parser.set_defaults(func=run_weights, action=None, parser=parser)
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION")

    def common(sub):
        sub.add_argument("--manifest", default=None,
                         help=f"manifest JSON (default: {os.path.relpath(DEFAULT_MANIFEST)})")

    listing = actions.add_parser("list", help="list the manifest's entries")
    common(listing)
    listing.add_argument("--cache-dir", default=None, help="cache folder to report on")
    listing.set_defaults(action=_run_list)

    get = actions.add_parser("fetch", help="download an entry into the cache, checking its sha256")
    get.add_argument("name")
    common(get)
    get.add_argument("--cache-dir", default=None,
                     help="default: $SSD_KERAS_WEIGHTS_DIR or ~/.keras/ssd_keras/weights")
    get.add_argument("--allow-unverified", action="store_true",
                     help="accept an entry without a recorded sha256 (prints the computed one)")
    get.add_argument("--url", default=None,
                     help="download from this URL or copy this local file instead")
    get.add_argument("--mirror", default=None, metavar="URL",
                     help="base URL serving <name><suffix> (e.g. NAME.weights.h5)")
    get.add_argument("--load", action="store_true",
                     help="also build the preset and load the weights (a check)")
    get.set_defaults(action=_run_fetch)

    add = actions.add_parser("register",
                             help="add a weights file to the manifest (sha256 from the file)")
    add.add_argument("path")
    add.add_argument("--name", required=True)
    add.add_argument("--preset", required=True)
    common(add)
    add.add_argument("--metric-json", default=None,
                     help="JSON file (or inline JSON object) with the evaluation metric(s)")
    add.add_argument("--url", default=None, help="where the file can be downloaded")
    add.add_argument("--source", default=None, help="where the file came from")
    add.add_argument("--note", default=None)
    add.add_argument("--licence", default=None, help="licence of the file (and of its origin)")
    add.add_argument("--format", default=None, choices=sorted(WEIGHT_FORMATS),
                     help="default: from the file suffix")
    add.set_defaults(action=_run_register)

    convert = actions.add_parser(
        "convert-mobilenet-v2",
        help="convert TF-slim MobileNetV2 1.0 ImageNet .npy arrays into the backbone .h5",
        description="Writes keras.applications.MobileNetV2(alpha=1.0, include_top=False) "
                    "weights, keyed by layer name (Keras-2 HDF5 layout), from the per-layer "
                    "arrays of the TF-slim mobilenet_v2_1.0_224 checkpoint; prints the sha256.")
    convert.add_argument("--npy", required=True, metavar="DIR",
                         help="folder of Conv_weights.npy, expanded_conv_1_expand_weights.npy, ...")
    convert.add_argument("--out", default=None, metavar="FILE.h5",
                         help="default: the file shipped in the package (ssd_keras/pretrained/)")
    convert.set_defaults(action=_run_convert_mobilenet_v2)
    return parser

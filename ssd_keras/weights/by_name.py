"""Weights by layer name: set ``{layer_name: [arrays]}`` on a model, with a report.

The one primitive every file format goes through once it is read into arrays
(:mod:`ssd_keras.weights.legacy`, :mod:`ssd_keras.weights.loading`): layers are
matched by *name*, so a backbone-only file (keras.applications' MobileNetV2 or
VGG16, the shipped ImageNet backbone) fills the backbone of a detector and
leaves the heads at their initialisation -- and the report says so.
"""
from __future__ import annotations

import numpy as np


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

"""Model graphs stay put: layer and weight names/shapes per preset, outputs on tiny configs.

Saved ``.keras`` files (weights stored by layer class and position), the legacy
``.h5`` importer and the shipped ImageNet backbone (matched by layer name) all
rely on the exact layers each builder makes.  ``data/model_fingerprints.json``
records, per preset (CenterNet ones included), a hash of the ordered
``(layer name, class)`` and ``(weight path, shape)`` lists; for a few tiny
configs also the sums of the seeded initial weights (the initializer order)
and of the outputs on a fixed input.  A failure means a builder changed its
graph: if that is intended (it breaks every saved model), regenerate with
``python tests/test_models_fingerprint.py --write`` and say so in the commit.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402  (registers the tiny_test architecture)

from ssd_keras import presets  # noqa: E402
from ssd_keras.models import base  # noqa: E402
from ssd_keras.models.base import SSDModel  # noqa: E402

FINGERPRINTS = Path(__file__).parent / "data" / "model_fingerprints.json"


def tiny_configs() -> dict:
    """Small configs that exercise every head / neck path (odd sizes, towers, depthwise)."""
    fpn = presets.get("ssd_mobilenet_v2_fpnlite_320")
    mnv2 = presets.get("ssd_mobilenet_v2_320")
    digits = presets.get("digits_convnet")
    return {
        "fpnlite_levels_2_4": fpn.replace(
            name="fpnlite_levels_2_4", image_size=(120, 120), num_classes=10,
            anchor_generator=type(fpn.anchor_generator)(min_level=2, max_level=4, anchor_scale=4.0,
                                               scales_per_octave=2, aspect_ratios=(1.0, 2.0, 0.5)),
            feature_strides=(4, 8, 16),
            backbone={**fpn.backbone, "depth_multiplier": 0.35, "min_depth": 8, "fpn_depth": 64,
                      "fpn_min_level": 2, "fpn_max_level": 4, "box_predictor_depth": 16,
                      "num_layers_before_predictor": 2}),
        "mobilenet_v2_kernel3": mnv2.replace(
            name="mobilenet_v2_kernel3", image_size=(192, 192), num_classes=5,
            backbone={**mnv2.backbone, "depth_multiplier": 0.35, "min_depth": 8,
                      "box_kernel_size": 3}),
        "digits_towers": digits.replace(
            name="digits_towers", image_size=(64, 64),
            backbone={**digits.backbone, "widths": [8, 8, 16, 16], "fpn_depth": 16,
                      "head_depth": 8, "head_layers": 2}),
        "tiny": tiny_models.tiny_config(),
    }


def _sha(lines) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]


def graph_fingerprint(model) -> dict:
    layers = [f"{layer.name}:{type(layer).__name__}" for layer in model.layers]
    weights = [f"{w.path}:{tuple(w.shape)}" for w in model.weights]
    return {"layers": len(layers), "layers_sha": _sha(layers), "weights": len(weights),
            "weights_sha": _sha(weights), "first_weight": weights[0], "last_weight": weights[-1]}


def numeric_fingerprint(model, config) -> dict:
    values = np.concatenate([np.ravel(keras.ops.convert_to_numpy(w)).astype(np.float64)
                             for w in model.weights])
    h, w = config.image_size
    x = np.random.default_rng(1).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
    out = model(x, training=False)
    outputs = {}
    for key in sorted(out):
        y = keras.ops.convert_to_numpy(out[key]).astype(np.float64)
        outputs[key] = {"shape": list(y.shape), "sum": float(y.sum()),
                        "abs_sum": float(np.abs(y).sum())}
    return {"weights_sum": float(values.sum()), "weights_abs_sum": float(np.abs(values).sum()),
            "outputs": outputs}


def _build(config):
    keras.utils.set_random_seed(0)
    # every family's model class (the CenterNet presets too), where the seam provides one
    return getattr(base, "DetectorModel", SSDModel)(config)


def compute() -> dict:
    out = {"presets": {}, "tiny": {}}
    for name in presets.names():
        out["presets"][name] = graph_fingerprint(_build(presets.get(name)))
        keras.backend.clear_session()
    for name, config in tiny_configs().items():
        model = _build(config)
        out["tiny"][name] = {**graph_fingerprint(model), **numeric_fingerprint(model, config)}
        keras.backend.clear_session()
    return out


def _recorded():
    return json.loads(FINGERPRINTS.read_text()) if FINGERPRINTS.exists() else {}


@pytest.fixture(scope="module")
def recorded():
    return _recorded()


def _explain(name):
    return (f"{name}: the graph changed (layer names/classes or weight order/shapes); saved "
            f".keras files and weight imports rely on them -- regenerate "
            f"{FINGERPRINTS.name} only for an intended, announced change")


@pytest.mark.parametrize("name", sorted(_recorded().get("presets", ())))
def test_preset_graph_unchanged(recorded, name):
    if name not in presets.names():
        pytest.skip(f"preset {name} no longer exists")
    assert graph_fingerprint(_build(presets.get(name))) == recorded["presets"][name], _explain(name)


@pytest.mark.parametrize("name", sorted(_recorded().get("tiny", ())))
def test_tiny_model_graph_init_and_outputs_unchanged(recorded, name):
    config = tiny_configs()[name]
    model = _build(config)
    expected = recorded["tiny"][name]
    got = {**graph_fingerprint(model), **numeric_fingerprint(model, config)}
    for key in ("layers", "layers_sha", "weights", "weights_sha", "first_weight", "last_weight"):
        assert got[key] == expected[key], _explain(name)
    # seeded initial weights: the initializers are drawn in the same order
    np.testing.assert_allclose([got["weights_sum"], got["weights_abs_sum"]],
                               [expected["weights_sum"], expected["weights_abs_sum"]], rtol=1e-5)
    for key, want in expected["outputs"].items():
        assert got["outputs"][key]["shape"] == want["shape"]
        np.testing.assert_allclose([got["outputs"][key]["sum"], got["outputs"][key]["abs_sum"]],
                                   [want["sum"], want["abs_sum"]], rtol=1e-4, atol=1e-4,
                                   err_msg=f"{name} {key}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_models_fingerprint.py --write")
    FINGERPRINTS.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FINGERPRINTS}")

"""Strict backbone options: each architecture knows its keys; a misspelt key is a one-line error."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import re  # noqa: E402

import pytest  # noqa: E402

from ssd_keras import presets  # noqa: E402
from ssd_keras.families.centernet import model as centernet_model  # noqa: E402
from ssd_keras.models import digits, mobilenet, vgg  # noqa: E402
from ssd_keras.models.base import SSDModel  # noqa: E402
from ssd_keras.models.options import backbone_options, declared_backbone_options  # noqa: E402

#: the builders' declarations (module constants and registry agree).
DECLARED = {"ssd_vgg16": vgg.SSD_VGG16_OPTIONS,
            "ssd_mobilenet_v2": mobilenet.SSD_MOBILENET_V2_OPTIONS,
            "ssd_mobilenet_v2_fpnlite": mobilenet.SSD_MOBILENET_V2_FPNLITE_OPTIONS,
            "digits_convnet": digits.DIGITS_CONVNET_OPTIONS,
            "resnet101_fpn": centernet_model.RESNET_OPTIONS,
            "centernet_convnet": centernet_model.CONVNET_OPTIONS}


def test_builders_declare_their_options():
    for architecture, defaults in DECLARED.items():
        assert declared_backbone_options(architecture) == defaults
    assert declared_backbone_options("no_such_architecture") is None


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_sets_only_declared_options(name):
    config = presets.get(name)
    declared = declared_backbone_options(config.architecture)
    if declared is None:
        pytest.skip(f"{config.architecture} checks its options with its own defaults")
    assert set(config.backbone) <= set(declared), name
    assert set(backbone_options(config)) == set(declared)


@pytest.mark.parametrize("preset", ["ssd300_voc", "ssd_mobilenet_v2_320",
                                    "ssd_mobilenet_v2_fpnlite_320", "digits_convnet"])
def test_unknown_backbone_key_is_one_line_error_naming_it(preset):
    base = presets.get(preset)
    config = base.replace(backbone={**base.backbone, "min_dept": 8})   # typo of min_depth
    with pytest.raises(ValueError) as info:
        SSDModel(config)
    message = str(info.value)
    assert "\n" not in message
    assert "['min_dept']" in message and repr(base.architecture) in message
    known = re.search(r"known: (\[.*\])", message).group(1)
    assert known == str(sorted(DECLARED[base.architecture]))


def test_defaults_fill_unset_keys_and_config_values_win():
    config = presets.get("digits_convnet")
    config = config.replace(backbone={"head_layers": 3})
    opts = backbone_options(config)
    assert opts["head_layers"] == 3
    assert opts["widths"] == digits.DIGITS_CONVNET_OPTIONS["widths"]


def test_keys_used_by_recipes_and_notebooks_are_declared():
    from ssd_keras.recipes import own_data_detector

    assert "min_depth" in mobilenet.SSD_MOBILENET_V2_FPNLITE_OPTIONS   # notebook 05's FPNLite runs
    recipe = own_data_detector(["raccoon"], total_steps=100)
    assert set(recipe.backbone) <= set(DECLARED[recipe.architecture])

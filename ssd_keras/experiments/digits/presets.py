"""Detector presets of the digits experiment, registered in :mod:`ssd_keras.presets` on import.

The research log's FPNLite detector with the ten digit classes; the crop-trained
``digits_convnet`` and the seed's ``ssd_mobilenet_v2_320_digits`` are library
presets (a saved digits model must reload after a plain ``import ssd_keras``).
"""
from __future__ import annotations

from ssd_keras import presets
from ssd_keras.data.digits import DIGIT_CLASSES


def ssd_mobilenet_v2_fpnlite_320_digits():
    """``ssd_mobilenet_v2_fpnlite_320`` with the 10 digit classes, otherwise unchanged.

    Its smallest anchors (level 3, anchor scale 4: 32 px at 320) are larger than
    the digits (6-17 px at 320): like the seed-like SSD, the honest TF OD API
    configuration, not a tuned one.
    """
    return presets.get("ssd_mobilenet_v2_fpnlite_320").replace(
        name="ssd_mobilenet_v2_fpnlite_320_digits", num_classes=10, class_names=DIGIT_CLASSES)


presets.register("ssd_mobilenet_v2_fpnlite_320_digits", ssd_mobilenet_v2_fpnlite_320_digits)

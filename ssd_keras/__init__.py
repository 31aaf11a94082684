"""ssd_keras: SSD object detection for Keras 3.

Quick tour::

    import ssd_keras
    config = ssd_keras.presets.get("ssd300_voc")
    anchors = config.anchors()                 # (8732, 4) normalised cx, cy, w, h
    model = ssd_keras.build_model(config)      # keras.Model, 26,285,486 parameters
    centernet = ssd_keras.build_model("centernet_digits")   # another family, same DetectorModel

A config's ``head`` (``SSDHead``, ``CenterNetHead``, discriminated by ``kind``)
picks its detector family (:mod:`ssd_keras.families`): targets, losses, decoder.
"""
__version__ = "0.1.0"

from ssd_keras import presets  # noqa: F401
from ssd_keras.config import (  # noqa: F401
    DetectorConfig, GridAnchors, MultiscaleAnchors, PriorBoxAnchors)
from ssd_keras.families.centernet.config import CenterNetHead  # noqa: F401
from ssd_keras.families.ssd.head import SSDHead  # noqa: F401
from ssd_keras.layers import InputScaling, L2Normalization  # noqa: F401
from ssd_keras.models.base import DetectorModel, SSDModel, build_inference_model  # noqa: F401
from ssd_keras.weights.loading import build_model  # noqa: F401
from ssd_keras.families.ssd.postprocess import DecodeDetections  # noqa: F401
from ssd_keras import reporting  # noqa: F401,E402
from ssd_keras.training import TrainConfig, TrainingDiverged, train  # noqa: F401,E402
# Registers the CenterNet family and its serialisable layers (CenterNetModel, CenterNetDecoder), so a
# saved CenterNet .keras reloads after ``import ssd_keras`` like the SSD models.
from ssd_keras.families import centernet  # noqa: F401,E402

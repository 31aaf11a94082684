"""``CenterNetFamily``: the CenterNet detector family at the :mod:`ssd_keras.families.base` seam."""
from __future__ import annotations

from ssd_keras.families.base import DetectorFamily, register_family
from ssd_keras.families.centernet.config import CenterNetHead
from ssd_keras.families.centernet.decode import CenterNetDecoder, decode_centernet
from ssd_keras.families.centernet.heads import centernet_heads
from ssd_keras.families.centernet.losses import centernet_loss, num_objects
from ssd_keras.families.centernet.targets import centernet_target_encoder

_DECODE_KEYS = ("max_detections", "peak_pool", "score_threshold")


def _decode_settings(config, overrides):
    unknown = sorted(set(overrides) - set(_DECODE_KEYS))
    if unknown:
        raise ValueError(f"CenterNet decoding: unknown override(s) {unknown}; known: "
                         f"{list(_DECODE_KEYS)}")
    return {k: overrides.get(k, getattr(config.head, k)) for k in _DECODE_KEYS}


class CenterNetFamily(DetectorFamily):
    """Objects as Points: class-centre heatmaps + size + offset, peak decoding, no NMS."""

    kind = "centernet"
    loss_names = ("object_center", "box_scale", "box_offset")
    output_names = ("object_center", "box_scale", "box_offset")
    decode_options = _DECODE_KEYS

    def head_from_dict(self, d: dict) -> CenterNetHead:
        return CenterNetHead.from_dict(d)

    def build_head(self, features, config):
        from ssd_keras.models.base import regularizer
        if len(features) != 1:
            raise ValueError(f"{config.name}: CenterNet predicts from one stride-"
                             f"{config.head.output_stride} map, got {len(features)} maps")
        return centernet_heads(features[0], config.num_classes, config.head, regularizer(config))

    def check_config(self, config):
        h, w = config.image_size
        s = config.head.output_stride
        if h % s or w % s:
            raise ValueError(f"{config.name}: image_size {config.image_size} is not a multiple of "
                             f"the output stride {s}")

    def check_outputs(self, outputs, config):
        h, w = config.image_size
        s = config.head.output_stride
        got = tuple(outputs["object_center"].shape[1:3])
        if got != (h // s, w // s):
            raise ValueError(f"{config.name}: the {config.architecture} graph gives a "
                             f"{got[0]}x{got[1]} map, not {h // s}x{w // s} (output stride {s})")

    def target_encoder(self, config, image_size=None):
        return centernet_target_encoder(config, image_size)

    def loss_normalizer(self, y_true):
        return num_objects(y_true)

    def loss(self, y_true, y_pred, config, normalizer=None):
        return centernet_loss(y_true, y_pred, config.head, normalizer)

    def decode(self, y_pred, config, **overrides):
        return decode_centernet(y_pred, **_decode_settings(config, overrides))

    def decoder_layer(self, config, **overrides):
        return CenterNetDecoder(config.image_size, name="detections",
                                **_decode_settings(config, overrides))


CENTERNET = register_family(CenterNetFamily())

"""The CenterNet family ("Objects as Points", Zhou et al. 2019; TF OD API ``center_net_meta_arch``).

Modules: :mod:`.config` (head config, stand-in detector config, presets),
:mod:`.targets` (heatmap / size / offset encoder for ``tf.data``), :mod:`.losses`
(penalty-reduced focal + L1), :mod:`.decode` (peak decoding, decoder layer),
:mod:`.model` (graphs, :class:`CenterNetModel`), :mod:`.family` (the seam).
"""
from ssd_keras.families.centernet.config import (PRESETS, CenterNetConfig, CenterNetHead,
                                                 centernet_preset)
from ssd_keras.families.centernet.decode import CenterNetDecoder, decode_centernet
from ssd_keras.families.centernet.family import CENTERNET, CenterNetFamily
from ssd_keras.families.centernet.model import (CenterNetModel, build_centernet_inference_model,
                                                build_centernet_model)
from ssd_keras.families.centernet.targets import encode_centernet_targets

__all__ = ["PRESETS", "CenterNetConfig", "CenterNetHead", "centernet_preset", "CenterNetDecoder",
           "decode_centernet", "CENTERNET", "CenterNetFamily", "CenterNetModel",
           "build_centernet_inference_model", "build_centernet_model", "encode_centernet_targets"]

"""The CenterNet family ("Objects as Points", Zhou et al. 2019; TF OD API ``center_net_meta_arch``).

Modules: :mod:`.config` (the head config), :mod:`.targets` (heatmap / size /
offset encoder for ``tf.data``), :mod:`.losses` (penalty-reduced focal + L1),
:mod:`.decode` (peak decoding, decoder layer), :mod:`.heads` (the three
prediction heads), :mod:`.model` (the ``resnet101_fpn`` and
``centernet_convnet`` architectures, the ``CenterNetModel`` name), :mod:`.family`
(the seam).  Presets: ``presets.get("centernet_resnet101_fpn_512")``,
``presets.get("centernet_digits")``.
"""
from ssd_keras.families.centernet.config import CenterNetHead
from ssd_keras.families.centernet.decode import CenterNetDecoder, decode_centernet
from ssd_keras.families.centernet.family import CENTERNET, CenterNetFamily
from ssd_keras.families.centernet.model import CenterNetModel
from ssd_keras.families.centernet.targets import encode_centernet_targets

__all__ = ["CenterNetHead", "CenterNetDecoder", "decode_centernet", "CENTERNET", "CenterNetFamily",
           "CenterNetModel", "encode_centernet_targets"]

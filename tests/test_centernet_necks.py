"""The reusable top-down FPN neck (ssd_keras.models.necks)."""
import keras
import numpy as np
import pytest

from ssd_keras.models.necks import top_down_fpn


def _inputs(channels=(16, 24, 32, 48), size=32):
    return [keras.Input((size >> k, size >> k, c)) for k, c in enumerate(channels)]


def test_centernet_style_channels_and_single_stride_4_output():
    feats = _inputs()
    (p,) = top_down_fpn(feats, channels=(8, 8, 12, 20), outputs=(0,), name="n")
    assert tuple(p.shape) == (None, 32, 32, 8)
    model = keras.Model(feats, p)
    # the lateral of level k has channels[k + 1] filters (added to the upsampled level k + 1)
    assert model.get_layer("n_lateral3").filters == 20
    assert model.get_layer("n_lateral2").filters == 20
    assert model.get_layer("n_smooth2").filters == 12
    assert model.get_layer("n_lateral0").filters == 8
    out = model([np.ones((1,) + tuple(f.shape[1:]), np.float32) for f in feats])
    assert out.shape == (1, 32, 32, 8)


def test_classic_fpn_all_levels_and_errors():
    feats = _inputs()
    maps = top_down_fpn(feats, channels=(16,) * 4, smoothed_top_down=False, smooth_top=True,
                        batch_norm=False, activation=None, name="c")
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 32, 16), (16, 16, 16), (8, 8, 16),
                                                  (4, 4, 16)]
    with pytest.raises(ValueError, match="equal channels"):
        top_down_fpn(feats, channels=(8, 16, 16, 16), smoothed_top_down=False)
    with pytest.raises(ValueError, match="one channel count per feature map"):
        top_down_fpn(feats, channels=(8, 8))

"""train(weights=...): a new run starts from the given weights; a resumed run ignores them."""
from __future__ import annotations

import keras
import numpy as np

from tests.tiny_models import tiny_config


class _FirstWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]


def test_new_run_starts_from_weights_and_resume_ignores_them(tmp_path):
    from ssd_keras.data.toy import make_voc_tree
    from ssd_keras.data.voc import read_voc
    from ssd_keras import build_model
    from ssd_keras.training import TrainConfig, train

    config = tiny_config()
    source = build_model(config)
    source.set_weights([np.full(w.shape, 0.01 * (i + 1), w.dtype)
                        for i, w in enumerate(source.get_weights())])
    path = str(tmp_path / "start.weights.h5")
    source.save_weights(path)
    records = read_voc(make_voc_tree(tmp_path / "voc", num_images=2, size=(64, 48),
                                     quirks=False), "trainval")
    tc = TrainConfig(total_steps=1, batch_size=2, steps_per_epoch=1, warmup_steps=0,
                     augment=False)
    seen = _FirstWeights()
    train(config, records, str(tmp_path / "run"), tc, weights=path, callbacks=[seen], verbose=0)
    for got, want in zip(seen.weights, source.get_weights()):
        np.testing.assert_array_equal(got, want)

    resumed = _FirstWeights()
    model, _ = train(config, records, str(tmp_path / "run"), tc.replace(total_steps=2),
                     weights=path, callbacks=[resumed], verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(resumed.weights, source.get_weights()))

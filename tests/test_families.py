"""The detector-family seam: a third family plugged in from this file alone.

``OneBox`` -- one box per image: a global-pooled regressor of a single
``[xmin, ymin, xmax, ymax]`` and one class.  It is defined here, with its head
config, target encoder, losses, decoder, decoder layer and architecture, and
then goes through the package's own ``DetectorConfig`` JSON round trip, the
``tf.data`` pipeline, ``train()`` (CSV log, validation loss, intermediate mAP),
``.keras`` round trip, the inference model and the experiment tables -- none
of which was edited for it, nor any SSD or CenterNet code.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from keras import ops

from ssd_keras import reporting
from ssd_keras.config import DetectorConfig
from ssd_keras.config_base import checked_fields
from ssd_keras.families import FAMILIES, DetectorFamily, get_family, register_family
from ssd_keras.models.base import DetectorModel, build_inference_model, register_architecture

from ssd_keras.data.voc import VOC_CLASSES as CLASSES


@dataclasses.dataclass(frozen=True)
class OneBoxHead:
    """The toy family's head config (``kind="one_box"``)."""

    kind: str = "one_box"
    hidden: int = 16
    label_loss_weight: float = 0.5

    @classmethod
    def from_dict(cls, d):
        return cls(**checked_fields(cls, d))


def decode_one_box(outputs):
    """``{"box": (B, 4), "logits": (B, K)}`` -> the seam's padded detections (``D = 1``)."""
    probs = ops.softmax(ops.cast(outputs["logits"], "float32"), axis=-1)
    batch = ops.shape(probs)[0]
    return {"boxes": ops.expand_dims(ops.cast(outputs["box"], "float32"), 1),
            "scores": ops.max(probs, axis=-1, keepdims=True),
            "classes": ops.expand_dims(ops.cast(ops.argmax(probs, axis=-1), "int32") + 1, 1),
            "num_detections": ops.ones((batch,), "int32")}


@keras.saving.register_keras_serializable(package="ssd_keras_tests")
class OneBoxDecoder(keras.layers.Layer):
    """The toy decoder layer: boxes in input pixels."""

    def __init__(self, image_size, **kwargs):
        super().__init__(**kwargs)
        self.image_size = tuple(int(s) for s in image_size)

    def call(self, outputs):
        out = decode_one_box(outputs)
        h, w = self.image_size
        out["boxes"] = out["boxes"] * ops.convert_to_tensor([w, h, w, h], "float32")
        return out

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}


class OneBoxFamily(DetectorFamily):
    kind = "one_box"
    loss_names = ("box", "label")
    output_names = ("box", "logits")

    def head_from_dict(self, d):
        return OneBoxHead.from_dict(d)

    def build_head(self, features, config):
        x = keras.layers.GlobalAveragePooling2D(name="one_box_pool")(features[-1])
        x = keras.layers.Dense(config.head.hidden, activation="relu", name="one_box_hidden")(x)
        box = keras.layers.Dense(4, activation="sigmoid", dtype="float32", name="box")(x)
        logits = keras.layers.Dense(config.num_classes, dtype="float32", name="logits")(x)
        return {"box": box, "logits": logits}

    def target_encoder(self, config, image_size=None):
        def encode(boxes, labels):
            boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
            labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
            positive = labels >= 1
            first_box = tf.concat([tf.boolean_mask(boxes, positive), tf.zeros((1, 4))], 0)[0]
            first_label = tf.concat([tf.boolean_mask(labels, positive), [0]], 0)[0]
            return {"box": first_box, "label": first_label,
                    "valid": tf.cast(tf.reduce_any(positive), tf.float32)}
        return encode

    def loss_normalizer(self, y_true):
        return ops.sum(ops.cast(y_true["valid"], "float32"))

    def loss(self, y_true, y_pred, config, normalizer=None):
        valid = ops.cast(y_true["valid"], "float32")
        count = self.loss_normalizer(y_true) if normalizer is None else normalizer
        n = ops.maximum(ops.cast(count, "float32"), 1.0)
        l1 = ops.sum(ops.abs(ops.cast(y_pred["box"], "float32") - y_true["box"]), axis=-1)
        ce = keras.losses.sparse_categorical_crossentropy(
            ops.maximum(ops.cast(y_true["label"], "int32") - 1, 0), y_pred["logits"],
            from_logits=True)
        return {"box": ops.sum(l1 * valid) / n,
                "label": config.head.label_loss_weight * ops.sum(ce * valid) / n}

    def decode(self, y_pred, config, **overrides):
        return decode_one_box(y_pred)

    def decoder_layer(self, config, **overrides):
        return OneBoxDecoder(config.image_size, name="detections")


ONE_BOX = register_family(OneBoxFamily())


@register_architecture("one_box_convnet")
def one_box_convnet(images, config):
    """Two strided convs -> ``[(B, H/4, W/4, 8)]`` for the family's head."""
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c1")(images)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    return [x]


def one_box_config(**changes):
    return DetectorConfig(name="one_box_toy", architecture="one_box_convnet", image_size=(32, 32),
                          num_classes=len(CLASSES), class_names=CLASSES, input_scaling="tf",
                          pixel_mean=(127.5,) * 3, channel_order="rgb", weight_decay=0.0,
                          head=OneBoxHead(**changes))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from ssd_keras.data.toy import make_voc_tree
    from ssd_keras.data.voc import read_voc

    root = tmp_path_factory.mktemp("voc")
    voc = make_voc_tree(root, num_images=4, size=(64, 48), quirks=False, seed=3)
    return read_voc(voc, "trainval")


# ----------------------------------------------------------------------------- the registry

def test_builtin_families_resolve_by_kind_and_unknown_kinds_name_the_known():
    assert get_family("ssd").loss_names == ("classification", "localization")
    assert get_family("centernet").loss_names == ("object_center", "box_scale", "box_offset")
    assert FAMILIES["one_box"] is ONE_BOX
    with pytest.raises(ValueError, match=r"unknown detector family 'yolo'; known: .*one_box"):
        DetectorConfig.from_dict({**one_box_config().to_dict(), "head": {"kind": "yolo"}})


def test_config_round_trip_and_head_fields_through_the_family():
    config = one_box_config(hidden=8)
    again = DetectorConfig.from_json(config.to_json())
    assert again == config and isinstance(again.head, OneBoxHead) and again.head.hidden == 8
    assert config.replace(hidden=4).head.hidden == 4      # head fields route to the head
    with pytest.raises(AttributeError, match="'one_box' detector"):
        config.anchors()
    with pytest.raises(AttributeError, match="anchor_generator is an SSD head field"):
        config.anchor_generator
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['max_detections'\] for a one_box"):
        config.replace(max_detections=3)


# ----------------------------------------------------------------------------- pipeline, model

def test_pipeline_encodes_with_the_family_and_the_model_trains_on_it(records, tmp_path):
    from ssd_keras.data.pipeline import make_dataset

    config = one_box_config()
    images, targets = next(iter(make_dataset(records, config, 2, training=False)))
    assert images.shape == (2, 32, 32, 3)
    assert set(targets) == {"box", "label", "valid"}
    assert targets["box"].shape == (2, 4) and targets["valid"].numpy().tolist() == [1.0, 1.0]
    first = records[0]
    np.testing.assert_allclose(targets["box"][0].numpy(),
                               np.asarray(first.boxes[0]) / [64, 48, 64, 48], atol=0.03)

    model = DetectorModel(config)
    assert sorted(model.output) == ["box", "logits"]
    assert [m.name for m in model.metrics] == ["box_loss", "label_loss", "regularization_loss"]
    path = os.path.join(tmp_path, "one_box.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.detector_config == config
    np.testing.assert_array_equal(loaded(images)["box"].numpy(), model(images)["box"].numpy())

    inference = build_inference_model(model)
    det = inference(images)
    assert det["boxes"].shape == (2, 1, 4) and float(ops.max(det["boxes"])) <= 32.0
    per_image = model.detect(images.numpy())
    assert len(per_image) == 2 and per_image[0]["labels"].shape == (1,)


def test_train_logs_evaluates_and_tabulates_the_toy_family(records, tmp_path):
    from ssd_keras.training import TrainConfig, train

    tc = TrainConfig(optimizer="adam", learning_rate=1e-2, warmup_steps=0, total_steps=4,
                     batch_size=2, steps_per_epoch=2, log_every=2, val_every=2, val_steps=1,
                     checkpoint_every=4, eval_every=4, augment=False, val_loss_images=2)
    run = str(tmp_path / "run")
    model, history = train(one_box_config(), records, run, tc, val_records=records,
                           eval_records=records, verbose=0)
    assert list(history.columns) == [
        "step", "epoch", "learning_rate", "box_loss", "label_loss", "regularization_loss",
        "total_loss", "val_box_loss", "val_label_loss", "val_regularization_loss",
        "val_total_loss", "elapsed_seconds"]
    assert history["step"].tolist() == [2, 4]
    np.testing.assert_allclose(history["total_loss"],
                               history[["box_loss", "label_loss", "regularization_loss"]].sum(1))
    assert np.isfinite(history["val_total_loss"]).all()
    mAP = pd.read_csv(os.path.join(run, "metrics", "intermediate_map.csv"))
    assert mAP["step"].tolist() == [4]          # the family's decoder fed the VOC evaluator

    tables = reporting.experiment_tables([run])
    assert list(tables["loss"].columns) == ["No", "box_loss", "label_loss",
                                            "regularization_loss", "total_loss", "steps",
                                            "total_classes"]
    paths = reporting.plot_loss_components(run, str(tmp_path / "figures"))
    assert sorted(os.path.basename(p) for p in paths if p.endswith(".svg")) == [
        "Loss_box_loss.svg", "Loss_label_loss.svg", "Loss_regularization_loss.svg",
        "Loss_total_loss.svg"]


def test_command_line_decode_flags_are_checked_against_the_family():
    from argparse import Namespace

    from ssd_keras import presets
    from ssd_keras.evaluation.cli import decode_overrides
    from ssd_keras.usage import UsageError

    args = Namespace(score_threshold=0.2, iou_threshold=0.5, max_detections=None)
    assert decode_overrides(args, presets.get("digits_convnet")) == {
        "score_threshold": 0.2, "iou_threshold": 0.5}
    with pytest.raises(UsageError, match="--iou-threshold: a centernet detector's decoder has no "
                                         "such setting"):
        decode_overrides(args, presets.get("centernet_digits"))
    with pytest.raises(UsageError, match="--score-threshold: a one_box detector"):
        decode_overrides(Namespace(score_threshold=0.2, iou_threshold=None, max_detections=None),
                         one_box_config())

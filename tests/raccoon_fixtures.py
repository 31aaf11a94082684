"""Small detectors that really detect raccoons, trained in seconds, for the export/predict tests.

The photos are the first ``NUM_IMAGES`` of the raccoon benchmark's test split
(``../shared/data/raccoon``: file names sorted as strings, the last 40).  The
detectors train *on those same photos* (a fixed seed, plain resize, no
augmentation): the tests check that exported graphs reproduce the Keras
model's detections, so what matters is a model with confident, varied
detections on real photos, not generalisation.  The architecture is the tiny
``tiny_test`` net of :mod:`tiny_models` at 64x64 with anchors of 32 and 64
pixels (raccoons fill much of each photo).  Two class names, ``badger`` then
``raccoon``, so the raccoon is label 2 and an off-by-one in the class
convention (softmax: background column 0 dropped; sigmoid: none) shows.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

RACCOON_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raccoon"
NUM_IMAGES = 8
CLASS_NAMES = ("badger", "raccoon")
RACCOON_LABEL = 2
# loss -> (steps, learning rate): enough for top scores ~0.4-0.9, short of saturating at 1.0
RECIPES = {"softmax": (40, 1e-2), "sigmoid_focal": (60, 1e-2)}


def raccoon_records(num_images: int = NUM_IMAGES) -> list:
    """VOC records of the first ``num_images`` raccoon test photos (skip when the data is absent)."""
    from ssd_keras.data.voc import annotation_record, parse_voc_xml, raise_problem

    images = RACCOON_DIR / "images"
    if not images.is_dir():
        pytest.skip(f"raccoon photos not found at {images} (see ../shared/data/README.md)")
    names = sorted(os.listdir(images))[-40:][:num_images]
    label_of = {name: i + 1 for i, name in enumerate(CLASS_NAMES)}
    records = []
    for name in names:
        stem = os.path.splitext(name)[0]
        xml = str(RACCOON_DIR / "annotations" / f"{stem}.xml")
        records.append(annotation_record(parse_voc_xml(xml), xml, str(images / name), stem,
                                         label_of, raise_problem))
    return records


def raccoon_config(loss: str):
    from ssd_keras.config import MultiscaleAnchors
    from tiny_models import tiny_config

    return tiny_config(num_classes=len(CLASS_NAMES), size=64).replace(
        name=f"raccoon_tiny_{loss}", class_names=CLASS_NAMES, classification_loss=loss,
        anchor_generator=MultiscaleAnchors(min_level=3, max_level=4, anchor_scale=4.0,
                                           scales_per_octave=1, aspect_ratios=(1.0, 2.0, 0.5)),
        score_threshold=0.05, weight_decay=0.0)


def train_raccoon_detectors(folder) -> dict:
    """``{loss: (model, path of its .keras)}`` for the softmax and sigmoid-focal losses."""
    import keras

    from ssd_keras.data.pipeline import make_dataset
    from ssd_keras import build_model

    records = raccoon_records()
    out = {}
    for loss, (steps, lr) in RECIPES.items():
        config = raccoon_config(loss)
        keras.utils.set_random_seed(0)
        model = build_model(config)
        model.compile(keras.optimizers.Adam(lr))
        data = make_dataset(records, config, NUM_IMAGES, training=True, seed=0, augment=False)
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        path = os.path.join(str(folder), f"{config.name}.keras")
        model.save(path)
        out[loss] = (model, path)
    return out

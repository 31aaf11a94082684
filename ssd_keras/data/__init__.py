"""Datasets: readers (VOC, COCO, synthetic digits), checker, download, augmentation, tf.data pipeline."""
from ssd_keras.data.records import Record, normalized_boxes, pixel_boxes, to_normalized  # noqa: F401

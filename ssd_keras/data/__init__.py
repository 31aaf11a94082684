"""Datasets: readers (VOC, COCO, synthetic digits), checker, download, augmentation, tf.data pipeline.

Readers return :class:`Record` objects with boxes in source pixels; the single
conversion to the model's normalised corners is :func:`normalized_boxes`.
"""
from ssd_keras.data.augment import (  # noqa: F401
    expand, min_iou_random_crop, photometric_distort, random_flip, random_resize, resize, ssd_augment)
from ssd_keras.data.check import (  # noqa: F401
    CheckReport, Problem, check_coco, check_records, check_voc, filter_bad_records)
from ssd_keras.data.coco import CocoLabels, coco_label_map, read_coco  # noqa: F401
from ssd_keras.data.digits import (  # noqa: F401
    DIGIT_CLASSES, DigitsSpec, generate_digits_dataset, read_digits, render_digit_image)
from ssd_keras.data.download import download_voc  # noqa: F401
from ssd_keras.data.pipeline import make_dataset, make_eval_dataset, preprocess_images  # noqa: F401
from ssd_keras.data.records import Record, normalized_boxes, pixel_boxes, to_normalized  # noqa: F401
from ssd_keras.data.voc import VOC_CLASSES, read_voc, read_voc_07_12, read_voc_union  # noqa: F401

"""Evaluation: VOC devkit-exact mAP, COCO metrics (pycocotools), intermediate-mAP callback."""
from ssd_keras.evaluation.coco import (  # noqa: F401
    coco_category_mapping, evaluate_coco, format_summary)
from ssd_keras.evaluation.voc import evaluate_voc, voc_ap, write_voc_results  # noqa: F401
from ssd_keras.evaluation.callback import IntermediateMAP  # noqa: F401,E402
from ssd_keras.evaluation.runner import evaluate_records, predict_records  # noqa: F401,E402

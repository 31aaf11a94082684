"""Evaluation: VOC devkit-exact mAP, COCO metrics (pycocotools), intermediate-mAP callback."""

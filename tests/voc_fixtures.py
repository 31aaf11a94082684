"""Test fixtures: the generated VOC/COCO datasets live in the package (``ssd_keras.data.toy``)."""
from ssd_keras.data.toy import *  # noqa: F401,F403
from ssd_keras.data.toy import QUIRK_OBJECTS, make_coco_dataset, make_voc_tree, voc_image_id  # noqa: F401

"""Detector families (SSD, CenterNet, ...): see :mod:`ssd_keras.families.base`."""
from ssd_keras.families.base import FAMILIES, DetectorFamily, get_family, register_family

__all__ = ["FAMILIES", "DetectorFamily", "get_family", "register_family"]

"""Model builders: SSD300/SSD512 (VGG16), SSD MobileNet v2, SSD MobileNet v2 FPNLite, digits.

Importing the package registers every builder with
:func:`ssd_keras.models.base.register_architecture` (a plain import order: each
builder module imports ``base``, ``base`` imports none of them).
"""
from ssd_keras.models import digits, mobilenet, vgg  # noqa: F401

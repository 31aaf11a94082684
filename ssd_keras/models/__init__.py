"""Model builders: SSD300/SSD512 (VGG16), SSD MobileNet v2, SSD MobileNet v2 FPNLite."""

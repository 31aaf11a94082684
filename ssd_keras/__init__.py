"""ssd_keras: SSD object detection for Keras 3."""
__version__ = "0.1.0"

"""The SSD family (Liu et al. 2016; TF OD API SSD / FPNLite): anchors, matching, losses, NMS.

Modules: :mod:`.anchors` (anchor specs and their generators), :mod:`.matching`
(bipartite + per-prediction matching, the ``tf.data`` target encoder),
:mod:`.losses` (softmax with hard negative mining, sigmoid focal, smooth L1),
:mod:`.postprocess` (batched per-class NMS, the ``DecodeDetections`` layer).
This package imports nothing at import time, so the common config may import
the anchor specs without a cycle.
"""

"""The research log's comparison (``001``), run for real on the digits: one recipe per row.

Every row trains on the same 800 generated images and is COCO-evaluated on the
same 200 test images by :func:`~ssd_keras.experiments.digits.job.run_digits`,
with a **fixed number of steps** sized so that its training costs at most 15
CPU minutes (process CPU time, all threads; measured with
``benchmarks/digits_step_cost.py``; ``run_info.json`` records what each run
really took).  The main job's row is the default recipe itself (more steps: it
is the product, sized to about 17 minutes of wall time on 2 idle cores).

* ``digits_convnet`` -- the main job (``python -m ssd_keras digits``);
* ``ssd_mobilenet_v2_320_{random,imagenet}`` -- the seed's detector (TF OD API
  ``ssd_mobilenet_v2_320x320``, 10 classes) on whole images resized to 320,
  from random weights and from the shipped ImageNet MobileNetV2 backbone;
* ``ssd_mobilenet_v2_fpnlite_320_{random,imagenet}`` -- the research log's FPNLite 320;
* ``centernet_digits`` -- the small CenterNet ("Objects as Points") on crops.

The MobileNet rows share one recipe (Adam 1e-3, 100-step warm-up, cosine, batch
16), so the two starts differ only in their initial weights.
"""
from __future__ import annotations

from ssd_keras.experiments.digits import presets as _digits_presets  # noqa: F401  (registers)
from ssd_keras.experiments.digits.job import CPU_RECIPE, DigitsRecipe

#: CPU budget of one comparison row's training, in CPU seconds (all threads).
CPU_BUDGET_SECONDS = 15 * 60

_MOBILENET = dict(input="images", batch_size=16, optimizer="adam", learning_rate=1e-3,
                  warmup_steps=100, log_every=25)

#: row name -> recipe (fixed steps within CPU_BUDGET_SECONDS; the main job excepted).
COMPARISON = {
    "digits_convnet": CPU_RECIPE,
    "ssd_mobilenet_v2_320_random": DigitsRecipe(preset="ssd_mobilenet_v2_320_digits", steps=600,
                                                **_MOBILENET),
    "ssd_mobilenet_v2_320_imagenet": DigitsRecipe(preset="ssd_mobilenet_v2_320_digits", steps=600,
                                                  weights="imagenet", **_MOBILENET),
    "ssd_mobilenet_v2_fpnlite_320_random": DigitsRecipe(
        preset="ssd_mobilenet_v2_fpnlite_320_digits", steps=450, **_MOBILENET),
    "ssd_mobilenet_v2_fpnlite_320_imagenet": DigitsRecipe(
        preset="ssd_mobilenet_v2_fpnlite_320_digits", steps=450, weights="imagenet", **_MOBILENET),
    "centernet_digits": DigitsRecipe(preset="centernet_digits", steps=1500, batch_size=32,
                                     learning_rate=2e-3, warmup_steps=50),
}

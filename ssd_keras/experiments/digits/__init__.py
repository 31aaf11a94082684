"""The digits experiment (the README's main job, ``python -m ssd_keras digits``).

* :mod:`.job` -- :class:`DigitsRecipe`, :func:`run_digits` and the ``digits`` command;
* :mod:`.crops` -- the crop-training dataset (crops sampled around the digits);
* :mod:`.callbacks` -- time budget and progress line.

The digits *dataset* (generator and reader) is library data, in
:mod:`ssd_keras.data.digits`.
"""
from ssd_keras.experiments.digits import presets  # noqa: F401  (registers the experiment's presets)
from ssd_keras.experiments.digits.job import (CPU_RECIPE, FULL_RECIPE, DigitsRecipe,  # noqa: F401
                                              detector_configs, run_digits)

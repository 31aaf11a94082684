"""The research log's comparison (``001``), run for real on the digits: one recipe per row.

Every row trains on the same 800 generated images and is COCO-evaluated on the
same 200 test images by :func:`~ssd_keras.experiments.digits.job.run_digits`,
with a **fixed number of steps** sized so that its training costs at most 15
CPU minutes (process CPU time, all threads; measured with
``benchmarks/digits_step_cost.py`` and earlier runs; ``run_info.json``
records what each run really took -- under CPU contention more: the two SSD
MobileNet v2 320 rows used 17 CPU minutes beside the CI suite).  The main
job's row is the default recipe itself (more steps: it is the product, 19 min
23 s of training on 2 idle cores in the measured run).

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

from ssd_keras.experiments.digits.job import CPU_RECIPE, DigitsRecipe

#: CPU budget of one comparison row's training, in CPU seconds (all threads).
CPU_BUDGET_SECONDS = 15 * 60

_MOBILENET = dict(input="images", batch_size=16, optimizer="adam", learning_rate=1e-3,
                  warmup_steps=100, log_every=25)

#: row name -> recipe (fixed steps within CPU_BUDGET_SECONDS; the main job excepted).
COMPARISON = {
    "digits_convnet": CPU_RECIPE,
    "ssd_mobilenet_v2_320_random": DigitsRecipe(preset="ssd_mobilenet_v2_320_digits", steps=280,
                                                **_MOBILENET),
    "ssd_mobilenet_v2_320_imagenet": DigitsRecipe(preset="ssd_mobilenet_v2_320_digits", steps=280,
                                                  weights="imagenet", **_MOBILENET),
    "ssd_mobilenet_v2_fpnlite_320_random": DigitsRecipe(
        preset="ssd_mobilenet_v2_fpnlite_320_digits", steps=180, **_MOBILENET),
    "ssd_mobilenet_v2_fpnlite_320_imagenet": DigitsRecipe(
        preset="ssd_mobilenet_v2_fpnlite_320_digits", steps=180, weights="imagenet", **_MOBILENET),
    "centernet_digits": DigitsRecipe(preset="centernet_digits", steps=1300, batch_size=32,
                                     learning_rate=2e-3, warmup_steps=50),
}


def run_comparison(rows=None, run_root: str = "runs/compare", main_run: str = "runs/digits",
                   data_dir=None, verbose: bool = True) -> dict:
    """Train (or reuse) the comparison rows; ``{row: metrics}``.

    Each row runs in ``run_root/<row>`` (the main job's row in ``main_run``); a
    folder holding the row's finished run is reused (see
    :func:`~ssd_keras.experiments.digits.job.run_digits`).
    """
    from ssd_keras.experiments.digits.job import run_digits

    results = {}
    for name in rows or COMPARISON:
        if name not in COMPARISON:
            raise ValueError(f"unknown comparison row {name!r}; rows: {', '.join(COMPARISON)}")
        out = main_run if name == "digits_convnet" else f"{run_root}/{name}"
        results[name] = run_digits(COMPARISON[name], out_dir=out, data_dir=data_dir,
                                   figures_dir=None, verbose=verbose)
    return results


def main(argv=None) -> int:
    """``python -m ssd_keras.experiments.digits.compare [ROW ...]``: run the comparison rows."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the digits comparison rows (notebook 05).")
    parser.add_argument("rows", nargs="*", help=f"rows (default all): {', '.join(COMPARISON)}")
    parser.add_argument("--run-root", default="runs/compare")
    parser.add_argument("--main-run", default="runs/digits")
    parser.add_argument("--data-dir", help="dataset folder (default data/digits)")
    args = parser.parse_args(argv)
    unknown = [r for r in args.rows if r not in COMPARISON]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(COMPARISON)}")
    for name, m in run_comparison(args.rows, args.run_root, args.main_run, args.data_dir).items():
        print(f"{name:40s} AP {m['AP']:.3f}  AP50 {m['AP50']:.3f}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())

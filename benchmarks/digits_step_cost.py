"""Where the digits job's training time goes: input pipeline vs train step, XLA on/off.

For each recipe (default: the main job's ``CPU_RECIPE``) it measures, after a
warm-up, over ``--steps`` steps:

* ``pipeline``  -- the training stream alone (crops or resized images + target encoding),
* ``step``      -- ``model.fit`` on one cached batch repeated (the model + loss + optimizer alone),
* ``step+xla``  -- the same with ``jit_compile=True`` (``--no-xla`` skips it),
* ``fit``       -- ``model.fit`` on the real stream (what the job does),

each as wall ms per batch and process CPU ms per batch (user + system, all
threads: the load-independent measure on a shared machine), and prints the
CPU seconds one step costs, which is how the comparison recipes' fixed step
counts were sized to 15 CPU minutes.

    python benchmarks/digits_step_cost.py [--recipes main mnv2_320 ...] [--steps 20]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import ssd_keras  # noqa: E402
from ssd_keras.data.digits import generate_digits_dataset, read_digits  # noqa: E402
from ssd_keras.experiments.digits import compare, job  # noqa: E402


def _timed(fn, n):
    w0, c0 = time.perf_counter(), job.cpu_seconds()
    fn()
    return 1000 * (time.perf_counter() - w0) / n, 1000 * (job.cpu_seconds() - c0) / n


def measure(recipe, records, steps, warmup=5, xla=True):
    train_config, _ = job.detector_configs(recipe)
    rows = {}
    ds = job.training_dataset(recipe, train_config, records)
    it = iter(ds)
    for _ in range(warmup):
        next(it)

    def pull():
        for _ in range(steps):
            next(it)
    rows["pipeline"] = _timed(pull, steps)

    batch = ds.take(1).cache().repeat()
    for name, jit in (("step", False), ("step+xla", True))[:2 if xla else 1]:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = ssd_keras.build_model(train_config)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        model.fit(batch, steps_per_epoch=warmup, epochs=1, verbose=0)
        rows[name] = _timed(lambda: model.fit(batch, steps_per_epoch=steps, epochs=1, verbose=0),
                            steps)
    keras.backend.clear_session()
    model = ssd_keras.build_model(train_config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    rows["fit"] = _timed(lambda: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0), steps)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["main"],
                        help=f"'main' and/or comparison runs: {', '.join(compare.COMPARISON)}")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-xla", action="store_true",
                        help="skip the jit_compile step (XLA:CPU compiles MobileNet for tens of "
                             "minutes on 2 cores)")
    parser.add_argument("--data-dir", default="data/digits")
    args = parser.parse_args(argv)
    generate_digits_dataset(args.data_dir, {"train": 800, "test": 200}, seed=2020, progress=False)
    records = read_digits(args.data_dir, "train")
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  "
          f"(ms per batch; CPU ms = all threads of this process)")
    for name in args.recipes:
        recipe = job.CPU_RECIPE if name == "main" else compare.COMPARISON[name]
        rows = measure(recipe, records, args.steps, xla=not args.no_xla)
        print(f"\n{name}: {recipe.preset}, input {recipe.input}, batch {recipe.batch_size}", flush=True)
        for k, (wall, cpu) in rows.items():
            print(f"  {k:9s} wall {wall:8.1f} ms   CPU {cpu:8.1f} ms")
        print(f"  -> {rows['fit'][1] / 1000:.3f} CPU s per training step; 15 CPU min = "
              f"{int(900 / (rows['fit'][1] / 1000))} steps")


if __name__ == "__main__":
    main()

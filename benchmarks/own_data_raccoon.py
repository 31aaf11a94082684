"""The real-data benchmark: train on 160 raccoon photos, COCO-evaluate on the other 40.

What a new user types, through the command line only (the recipe is the
``train --data`` default, :mod:`ssd_keras.recipes`)::

    python benchmarks/own_data_raccoon.py [--data-root ../shared/data/raccoon] [--out DIR]

1. The fixed split: the annotation file names sorted as strings
   (``raccoon-1``, ``raccoon-10``, ``raccoon-100``, ...), the first 160 train,
   the last 40 test -- written as two XML list files, ``DIR/train.txt`` and
   ``DIR/test.txt`` (no copying).
2. ``python -m ssd_keras train --data DIR/train.txt --val-data DIR/test.txt --run-dir DIR/run``
   (its output, the plan included, streams through).
3. ``python -m ssd_keras evaluate --model DIR/run/model.keras --data DIR/test.txt --out DIR/test_metrics.json``.

It prints the training wall time and the CPU time of both commands (the fairer
figure on a shared machine: on ``c`` idle cores wall ~ CPU / c), the COCO
numbers, and whether they clear the floor of issue 12 (AP >= 0.55 and
AP50 >= 0.90 with <= 20 minutes of training on an idle 2-core machine).
Extra arguments after ``--`` go to ``train`` (e.g. ``-- --steps 40`` for a
quick check of the script itself).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir, "shared", "data",
                                             "raccoon"))
FLOOR = {"AP": 0.55, "AP50": 0.90}
AIM = {"AP": 0.65, "AP50": 0.95}
TRAIN_MINUTES_LIMIT = 20.0


def write_split(data_root: str, out_dir: str, num_train: int = 160):
    """``(train.txt, test.txt)``: the XML files, names sorted as strings, first ``num_train`` train."""
    annotations = os.path.join(data_root, "annotations")
    if not os.path.isdir(annotations):
        raise SystemExit(f"own_data_raccoon: no annotations/ folder in {data_root} "
                         f"(see ../shared/data/README.md)")
    files = sorted(f for f in os.listdir(annotations) if f.endswith(".xml"))
    paths = []
    for name, part in (("train.txt", files[:num_train]), ("test.txt", files[num_train:])):
        path = os.path.join(out_dir, name)
        with open(path, "w") as handle:
            handle.write("".join(os.path.join(os.path.abspath(annotations), f) + "\n"
                                 for f in part))
        paths.append(path)
    print(f"split: {num_train} train / {len(files) - num_train} test XML files "
          f"(names sorted as strings) -> {paths[0]}, {paths[1]}", flush=True)
    return paths


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command) -> tuple:
    """Run a CLI command, output streaming through; ``(wall seconds, CPU seconds)``."""
    print("$ " + " ".join(command), flush=True)
    cpu0, t0 = _children_cpu(), time.perf_counter()
    code = subprocess.call(command)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if code != 0:
        raise SystemExit(f"own_data_raccoon: {command[3]} failed with exit status {code}")
    return wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=DEFAULT_DATA, help="the raccoon folder")
    parser.add_argument("--out", help="output folder (default: a new temporary folder)")
    parser.add_argument("train_args", nargs="*", help="extra train arguments (after --)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="own_data_raccoon_")
    os.makedirs(out, exist_ok=True)
    train_list, test_list = write_split(args.data_root, out)
    run_dir = os.path.join(out, "run")
    metrics_path = os.path.join(out, "test_metrics.json")
    python = [sys.executable, "-m", "ssd_keras"]

    train_wall, train_cpu = run(python + ["train", "--data", train_list, "--val-data", test_list,
                                          "--run-dir", run_dir, "--verbose", "2"]
                                + list(args.train_args))
    eval_wall, eval_cpu = run(python + ["evaluate", "--model", os.path.join(run_dir, "model.keras"),
                                        "--data", test_list, "--out", metrics_path])
    with open(metrics_path) as handle:
        metrics = json.load(handle)

    cores = os.cpu_count() or 1
    floor_ok = all(metrics[k] >= v for k, v in FLOOR.items())
    aim_ok = all(metrics[k] >= v for k, v in AIM.items())
    print()
    print(f"own-data benchmark: raccoon, 160 train / 40 test, {cores} CPU cores "
          f"(load average now {os.getloadavg()[0]:.1f})")
    print(f"train (command, incl. model build and the end-of-run report): "
          f"{train_wall / 60:.1f} min wall, {train_cpu / 60:.1f} min CPU")
    print(f"evaluate: {eval_wall:.0f} s wall, {eval_cpu:.0f} s CPU")
    print(f"COCO on the 40 test images: AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
          f"AP75 {metrics['AP75']:.3f}  AR100 {metrics['AR100']:.3f}")
    print(f"floor AP >= {FLOOR['AP']}, AP50 >= {FLOOR['AP50']}: {'met' if floor_ok else 'NOT met'};"
          f" aim AP >= {AIM['AP']}, AP50 >= {AIM['AP50']}: {'met' if aim_ok else 'not met'}; "
          f"training {'within' if train_wall / 60 <= TRAIN_MINUTES_LIMIT else 'OVER'} "
          f"{TRAIN_MINUTES_LIMIT:.0f} minutes wall")
    print(f"run folder: {run_dir} (metrics.json, plots/, model.keras)")
    return 0 if floor_ok else 1


if __name__ == "__main__":
    sys.exit(main())

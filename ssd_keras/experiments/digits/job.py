"""The main job: ``python -m ssd_keras digits`` -- synthetic digits, trained on a 2-core CPU.

The reference ("Experiment 01": SSD MobileNet v2 320x320, 30k GPU steps on 800
synthetic 512x512 seven-segment-digit images) reaches COCO mAP 0.653 / AP50
0.803.  Every digit is small (10-28 px high, width 0.3-0.75 of the height)
and most of each image is background, so this job

1. generates the dataset once (``ssd_keras.data.digits``, cached in ``data/digits``),
2. trains a small fully convolutional SSD (``digits_convnet`` below: a plain
   conv backbone to stride 16, an FPN on strides 4 and 8, one 3x3 tower per
   level and head, sigmoid focal loss) on 128x128 crops sampled around the
   digits (:mod:`ssd_keras.experiments.digits.crops`), with pixel-sized anchors fitted to the
   digit boxes (:class:`~ssd_keras.config.MultiscaleAnchors`: levels 2-3,
   anchor scale 2 -> 8/11 px and 16/23 px, aspect ratios w/h 0.3, 0.55, 0.8),
3. copies the weights into the same config at 512x512 (same pixel anchors on
   a larger grid) and evaluates the 200 test images with pycocotools,
4. writes ``model.keras`` (512 input), ``metrics.json``, ``config.json``,
   ``recipe.json``, ``run_info.json``, ``logs/train_log.csv`` and the four
   ``Loss_*.svg`` plots (also into ``figures/``).

The default run is a **fixed number of optimiser steps** with a fixed seed,
so the same command gives the same metrics on a busy laptop, a quiet build
machine or a 16-core workstation (only the wall time differs; the job prints
the expected training time after its first steps, then an ETA every
``log_every`` steps).  ``--time-budget-minutes M`` instead sizes the run to
``M`` minutes at the speed measured here (a short calibration; recorded in
``recipe.json`` and ``run_info.json``).  ``--full`` is the long GPU recipe.

Recipes are data (:class:`DigitsRecipe`): besides the crop-trained default, a
recipe can train a preset on whole images resized to its input size
(``input="images"``, the TF OD API way: SSD random crop, no flip -- a mirrored
2 is a 5), from random or ImageNet weights (``weights="imagenet"``: the
shipped MobileNetV2 backbone), which is how notebook 05's comparison runs the
research log's detectors on the digits.

The ``digits_convnet`` architecture lives in :mod:`ssd_keras.models.digits` and
its preset in :mod:`ssd_keras.presets`, so ``import ssd_keras`` is enough to
reload a saved digits ``model.keras``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import sys
import time
from typing import Optional

import keras
import numpy as np

from ssd_keras import presets
from ssd_keras.config import DetectorConfig
from ssd_keras.experiments.digits.callbacks import ProgressLine, TimeBudget, duration as _duration
from ssd_keras.experiments.digits.crops import CropSpec
from ssd_keras.io_utils import write_json
from ssd_keras.usage import UsageError


# ----------------------------------------------------------------------------- recipe


#: optimizer steps of the default CPU recipe: 19 min 23 s of training on an idle
#: 2-core machine of this project's kind (benchmarks/RESULTS.md), the same model everywhere.
DEFAULT_STEPS = 2600
INPUT_MODES = ("crops", "images")


@dataclasses.dataclass
class DigitsRecipe:
    """Everything the ``digits`` job does, as data (written to ``DIR/recipe.json``).

    Attributes:
        preset: detector preset.
        input: ``"crops"``: train on ``crop.crop_size`` crops around the digits,
            evaluate at ``eval_size`` (the architecture must be fully
            convolutional with pixel-sized anchors); ``"images"``: train and
            evaluate on whole images resized to the preset's ``image_size``
            (photometric distortion + SSD random crop, no expand, no flip).
        weights: initial weights (``None``: random; ``"imagenet"``: the
            shipped ImageNet backbone of MobileNet presets; a file).
        crop: :class:`~ssd_keras.experiments.digits.crops.CropSpec` of the training crops.
        batch_size: crops (or images) per step.
        steps: optimizer steps (the default: fixed, so every machine gets the
            same model).  ``None``: as many as fit in ``time_budget_minutes``
            at the speed measured here (a short calibration run), between
            ``min_steps`` and ``max_steps``.
        optimizer, learning_rate, warmup_steps, cosine_min_factor: Adam/SGD,
            linear warm-up then cosine decay (``ssd_keras.training.WarmupSchedule``).
        time_budget_minutes: wall-time limit of the training phase (image
            loading, calibration, training); training stops gracefully at the
            deadline (``None``: no limit, the default).  Data generation
            (~0.5 min, cached afterwards) and evaluation (~0.5 min) come on top.
        log_every: loss-log row and progress-line interval (steps).
        train_images, test_images, data_seed: the generated dataset.
        seed: crop stream and weight initialisation seed.
        eval_size: evaluation input ``(height, width)`` (the images' size).
        score_threshold, max_detections: decoding for COCO AP.
    """

    preset: str = "digits_convnet"
    input: str = "crops"
    weights: Optional[str] = None
    crop: dict = dataclasses.field(default_factory=lambda: CropSpec().to_dict())
    batch_size: int = 32
    steps: Optional[int] = DEFAULT_STEPS
    min_steps: int = 200
    max_steps: int = 4000
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    cosine_min_factor: float = 0.0
    time_budget_minutes: Optional[float] = None
    log_every: int = 25
    train_images: int = 800
    test_images: int = 200
    data_seed: int = 2020
    seed: int = 0
    eval_size: tuple = (512, 512)
    eval_batch_size: int = 8
    score_threshold: float = 0.01
    max_detections: int = 100

    def __post_init__(self):
        if self.input not in INPUT_MODES:
            raise ValueError(f"input must be one of {INPUT_MODES}, got {self.input!r}")
        if self.steps is None and self.time_budget_minutes is None:
            raise ValueError("a recipe needs steps or time_budget_minutes")

    @property
    def crop_spec(self) -> CropSpec:
        return CropSpec(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in self.crop.items()})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes) -> "DigitsRecipe":
        return dataclasses.replace(self, **changes)


#: the default: a fixed 2,600 steps (19 min 23 s of training on 2 idle CPU cores, measured).
CPU_RECIPE = DigitsRecipe()
#: ``--full``: a GPU, more steps and a bigger batch of bigger crops.
FULL_RECIPE = DigitsRecipe(batch_size=64, steps=20000, learning_rate=2e-3, warmup_steps=500,
                           time_budget_minutes=None, log_every=100)


def detector_configs(recipe: DigitsRecipe):
    """``(train_config, eval_config)``: the preset at the crop size and at the evaluation size.

    For ``input="images"`` both are the preset itself (whole images resized to its input).
    """
    base = presets.get(recipe.preset)
    if recipe.input == "images":
        return base, base
    size = int(recipe.crop_spec.crop_size)
    return (base.replace(image_size=(size, size)),
            base.replace(image_size=tuple(int(s) for s in recipe.eval_size)))


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its threads so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def training_dataset(recipe: DigitsRecipe, config: DetectorConfig, records):
    """The infinite training stream of ``(images (B, h, w, 3) RGB [0, 255], targets)``.

    ``input="crops"``: :func:`~ssd_keras.experiments.digits.crops.crop_dataset`
    (crops of ``config.image_size`` around the digits).  ``input="images"``:
    :func:`~ssd_keras.data.pipeline.make_dataset` on whole images with the SSD
    photometric distortion and random crop, no expand (the digits are small
    already) and no flip (a mirrored 2 is a 5), resized to ``config.image_size``.
    """
    from ssd_keras.data.augment import ssd_augment
    from ssd_keras.data.pipeline import make_dataset
    from ssd_keras.experiments.digits.crops import crop_dataset, load_image_bank

    if recipe.input == "crops":
        return crop_dataset(load_image_bank(records), config, recipe.batch_size, recipe.crop_spec,
                            seed=recipe.seed)
    size = tuple(int(v) for v in config.image_size)

    def augment(image, boxes, labels, seed):
        return ssd_augment(image, boxes, labels, seed, size, config.pixel_mean,
                           expand_probability=0.0, flip_probability=0.0)
    return make_dataset(records, config, recipe.batch_size, training=True, seed=recipe.seed,
                        augment=augment)


def measure_steps_per_second(config: DetectorConfig, dataset, recipe: DigitsRecipe,
                             warmup: int = 8, steps: int = 16) -> float:
    """Training steps per second of ``config`` on ``dataset`` here and now (a throwaway model).

    The first ``warmup`` steps (tracing) are not timed.
    """
    from ssd_keras.models.base import DetectorModel

    times = []

    class _Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.monotonic())

    model = DetectorModel(config)
    optimizer = (keras.optimizers.Adam(recipe.learning_rate) if recipe.optimizer == "adam"
                 else keras.optimizers.SGD(recipe.learning_rate, momentum=0.9))
    model.compile(optimizer=optimizer)
    model.fit(dataset.take(warmup + steps), epochs=1, verbose=0, callbacks=[_Clock()],
              shuffle=False)
    del model
    keras.backend.clear_session()
    return steps / max(times[-1] - times[warmup - 1], 1e-9)


# ----------------------------------------------------------------------------- the job


def data_root_for(recipe: DigitsRecipe, data_dir: Optional[str]) -> str:
    """``data/digits`` for the standard 800/200 split, else a folder of its own (cache kept)."""
    if data_dir:
        return data_dir
    if (recipe.train_images, recipe.test_images) == (800, 200):
        return os.path.join("data", "digits")
    return os.path.join("data", f"digits_{recipe.train_images}_{recipe.test_images}")


def _finished_run(out_dir: str) -> Optional[dict]:
    """``run_info.json`` of a run that completed its planned steps and wrote its results, else None."""
    info_path = os.path.join(out_dir, "run_info.json")
    if not all(os.path.exists(os.path.join(out_dir, n)) for n in ("metrics.json", "model.keras")):
        return None
    if not os.path.exists(info_path):
        return None
    with open(info_path) as f:
        info = json.load(f)
    return info if info.get("steps_done") == info.get("steps_planned") else None


def run_digits(recipe: DigitsRecipe, out_dir: str = "runs/digits", data_dir: Optional[str] = None,
               figures_dir: Optional[str] = "figures", verbose: bool = True,
               retrain: bool = False) -> dict:
    """Generate (cached) data, train on crops, evaluate at full size; return the metrics.

    A folder that already holds the finished run of the same recipe is reused
    as it is (its ``metrics.json`` returned, nothing retrained or rewritten)
    unless ``retrain``; an interrupted run of the same recipe resumes from its
    backup; a different recipe's folder is trained afresh.

    Writes into ``out_dir``: ``model.keras`` (evaluation size), ``metrics.json``
    (the 12 COCO numbers + per-category AP), ``config.json`` (the saved model's
    DetectorConfig), ``recipe.json``, ``run_info.json`` (phase times, steps
    done), ``logs/train_log.csv`` and ``Loss_*.svg`` (also in ``figures_dir``).
    """
    from ssd_keras.data.digits import generate_digits_dataset, read_digits
    from ssd_keras.evaluation.coco import STAT_NAMES, evaluate_coco
    from ssd_keras.evaluation.runner import predict_records
    from ssd_keras.models.base import DetectorModel
    from ssd_keras.reporting import plot_loss_components
    from ssd_keras.training import TrainConfig, train

    say = print if verbose else (lambda *a, **k: None)
    t_start = time.monotonic()
    times = {}
    os.makedirs(out_dir, exist_ok=True)
    recipe_path = os.path.join(out_dir, "recipe.json")
    if os.path.exists(recipe_path):
        with open(recipe_path) as f:
            previous = json.load(f)
        finished = _finished_run(out_dir)
        if previous == recipe.to_dict() and finished is not None and not retrain:
            say(f"digits: {out_dir} holds this recipe's finished run ({finished['steps_done']} "
                f"steps); reusing its model and metrics (--retrain to train again)", flush=True)
            with open(os.path.join(out_dir, "metrics.json")) as f:
                return json.load(f)
        if previous != recipe.to_dict() or retrain:
            # a different recipe (or asked to): do not resume its backup
            say(f"digits: {out_dir} holds " + ("a run" if retrain else "another recipe")
                + "; starting training afresh")
            for name in ("backup", "checkpoints", "logs", "metrics"):
                shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    write_json(recipe_path, recipe.to_dict())

    # -- data
    root = data_root_for(recipe, data_dir)
    files = generate_digits_dataset(root, {"train": recipe.train_images, "test": recipe.test_images},
                                    seed=recipe.data_seed, progress=verbose)
    train_records = read_digits(root, "train")
    test_records = read_digits(root, "test")
    times["data_seconds"] = time.monotonic() - t_start

    # -- training (on crops or whole images)
    t0 = time.monotonic()
    cpu0 = cpu_seconds()
    deadline = (None if recipe.time_budget_minutes is None
                else t0 + 60.0 * recipe.time_budget_minutes)
    train_config, eval_config = detector_configs(recipe)
    dataset = training_dataset(recipe, train_config, train_records)
    steps = recipe.steps
    calibration = None
    if steps is None:
        calibration = measure_steps_per_second(train_config, dataset, recipe)
        # ~15 s go to building and tracing the real model
        left = deadline - time.monotonic() - 15.0
        steps = int(np.clip(calibration * left, recipe.min_steps, recipe.max_steps))
        say(f"digits: {calibration:.2f} steps/s measured here -> {steps} steps "
            f"in the {recipe.time_budget_minutes:g} min budget", flush=True)
    log_every = max(1, min(recipe.log_every, steps))
    tc = TrainConfig(optimizer=recipe.optimizer, learning_rate=recipe.learning_rate,
                     warmup_steps=min(recipe.warmup_steps, max(steps // 10, 1)),
                     warmup_start_factor=0.1, schedule="cosine",
                     cosine_min_factor=recipe.cosine_min_factor, total_steps=steps,
                     batch_size=recipe.batch_size, steps_per_epoch=log_every,
                     log_every=log_every, backup_every=max(log_every, 250),
                     checkpoint_every=steps, keep_checkpoints=1, seed=recipe.seed,
                     augment=True)
    budget_cb = TimeBudget(deadline)
    progress = ProgressLine(steps, log_every, deadline, print_fn=say)
    what = (f"{recipe.crop_spec.crop_size}px crops of" if recipe.input == "crops"
            else f"{train_config.image_size[0]}x{train_config.image_size[1]} resized")
    say(f"digits: training {train_config.name} ({train_config.architecture}"
        f"{', from ' + recipe.weights if recipe.weights else ', random init'}) on {what} "
        f"{len(train_records)} images: {steps} steps x {recipe.batch_size}"
        + (f", time budget {recipe.time_budget_minutes:g} min" if deadline else ""), flush=True)
    model, history = train(train_config, run_dir=out_dir, train_config=tc, train_dataset=dataset,
                           callbacks=[budget_cb, progress], verbose=0, weights=recipe.weights,
                           report=False)
    n_params = int(model.count_params())
    steps_done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    times["train_seconds"] = time.monotonic() - t0
    times["train_cpu_seconds"] = cpu_seconds() - cpu0
    del dataset

    # -- evaluation at full size: same weights, same pixel anchors on a larger grid
    t0 = time.monotonic()
    if eval_config == train_config:
        eval_model = model
    else:
        eval_model = DetectorModel(eval_config)
        eval_model.set_weights(model.get_weights())
    eval_model.save(os.path.join(out_dir, "model.keras"))
    eval_config.to_json(os.path.join(out_dir, "config.json"))
    # SSD also caps its NMS candidates per class; other families have no such setting
    per_class = ({"max_detections_per_class": recipe.max_detections}
                 if hasattr(eval_config.head, "max_detections_per_class") else {})
    detections = predict_records(eval_model, test_records, batch_size=recipe.eval_batch_size,
                                 score_threshold=recipe.score_threshold,
                                 max_detections=recipe.max_detections, **per_class)
    result = evaluate_coco(detections, files["test"][0],
                           image_ids=[r.image_id for r in test_records], print_summary=verbose)
    metrics = {name: result[name] for name in STAT_NAMES}
    metrics["per_category"] = result["per_category"]
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    times["eval_seconds"] = time.monotonic() - t0

    # -- loss plots
    for folder in filter(None, (out_dir, figures_dir)):
        plot_loss_components(out_dir, folder, prefix="Loss_")
    times["total_seconds"] = time.monotonic() - t_start
    info = {"steps_planned": steps, "steps_done": steps_done,
            "calibration_steps_per_second": calibration,
            "time_budget_minutes": recipe.time_budget_minutes,
            "stopped_by_time_budget": budget_cb.stopped_at is not None,
            "parameters": n_params, "train_steps_per_second":
            steps_done / max(times["train_seconds"], 1e-9), **times}
    write_json(os.path.join(out_dir, "run_info.json"), info)
    say(f"digits: {steps_done} steps in {_duration(times['train_seconds'])} "
        f"({info['train_steps_per_second']:.2f} steps/s), total {_duration(times['total_seconds'])}; "
        f"AP {metrics['AP']:.3f} AP50 {metrics['AP50']:.3f} -> {out_dir}", flush=True)
    return metrics


# ----------------------------------------------------------------------------- CLI


def recipe_from_args(args: argparse.Namespace) -> DigitsRecipe:
    """The recipe of the ``digits`` command: ``CPU_RECIPE`` (or ``FULL_RECIPE``) with the flags.

    ``--time-budget-minutes M`` (``M > 0``) sizes the run to the budget instead
    of the fixed step count (unless ``--steps`` is given too: then the budget
    only caps the wall time).
    """
    recipe = FULL_RECIPE if args.full else CPU_RECIPE
    changes = {"train_images": args.train_images, "test_images": args.test_images,
               "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
               "learning_rate": args.lr, "preset": args.preset, "max_steps": args.max_steps,
               "input": args.input, "weights": args.weights}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.weights is not None and args.weights.lower() == "none":
        changes["weights"] = None
    if args.time_budget_minutes is not None and args.time_budget_minutes > 0:
        changes["time_budget_minutes"] = args.time_budget_minutes
        if args.steps is None:
            changes["steps"] = None
    crop = dict(recipe.crop)
    if args.crop_size is not None:
        crop["crop_size"] = args.crop_size
    changes["crop"] = crop
    steps = changes.get("steps", recipe.steps)
    if steps is not None:
        changes["log_every"] = max(1, min(recipe.log_every, steps))
    try:
        return recipe.replace(**changes)
    except ValueError as error:
        raise UsageError(f"digits: {error}") from None


def run_command(args: argparse.Namespace) -> int:
    """The ``digits`` command."""
    recipe = recipe_from_args(args)
    figures = None if args.figures_dir in ("", "none") else args.figures_dir
    run_digits(recipe, out_dir=args.out, data_dir=args.data_dir, figures_dir=figures,
               retrain=args.retrain)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``digits`` command."""
    p = subparsers.add_parser(
        "digits", help="the main job: synthetic digits, train on crops, COCO-evaluate (CPU, ~21 min)",
        description="Generate the synthetic seven-segment digits (cached), train a small SSD on "
                    "crops around the digits, evaluate on the full 512x512 test images with "
                    "pycocotools, and write model, metrics, loss log and loss plots.")
    p.add_argument("--out", default="runs/digits", help="run folder (default runs/digits)")
    p.add_argument("--data-dir", help="dataset folder (default data/digits)")
    p.add_argument("--figures-dir", default="figures",
                   help="also write the loss plots here (default figures; 'none' to skip)")
    p.add_argument("--full", action="store_true", help="the long GPU recipe (more steps, bigger batch)")
    p.add_argument("--train-images", type=int, help="training images to generate (800)")
    p.add_argument("--test-images", type=int, help="test images to generate (200)")
    p.add_argument("--steps", type=int,
                   help=f"optimizer steps (default {DEFAULT_STEPS}: the same model on every machine)")
    p.add_argument("--max-steps", type=int,
                   help="upper limit of the step count sized by --time-budget-minutes")
    p.add_argument("--batch-size", type=int, help="crops per step")
    p.add_argument("--crop-size", type=int, help="training crop side in pixels")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--preset", help="detector preset (default digits_convnet)")
    p.add_argument("--time-budget-minutes", type=float,
                   help="size the run to this many minutes of training at the speed measured "
                        "here (results then depend on the machine; recorded in recipe.json)")
    p.add_argument("--input", choices=INPUT_MODES,
                   help="train on crops around the digits (default) or whole resized images")
    p.add_argument("--weights",
                   help="initial weights: none (default), imagenet (MobileNet presets: the "
                        "shipped backbone) or a file")
    p.add_argument("--seed", type=int, help="crop stream / initialisation seed")
    p.add_argument("--retrain", action="store_true",
                   help="train again even if --out holds this recipe's finished run")
    p.set_defaults(func=run_command)
    return p


def main(argv=None) -> int:
    """Run ``digits`` without the package-wide CLI."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "digits", argv)


if __name__ == "__main__":
    sys.exit(main())

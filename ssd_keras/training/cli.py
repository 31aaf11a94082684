"""``python -m ssd_keras train``: flags -> configs, records and a strategy -> :func:`train`.

The defaults reproduce notebook 01 (:func:`default_weights`, :func:`default_voc_val`);
``--data`` with no preset or config trains with the own-data recipe of
:mod:`ssd_keras.recipes`, sized to the data.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from ssd_keras.callbacks import TrainingDiverged
from ssd_keras.training.config import TrainConfig, reference_train_config
from ssd_keras.training.distribute import WorkerLost, multi_worker_strategy
from ssd_keras.training.fit import train
from ssd_keras.usage import UsageError

__all__ = ["run_train", "register", "main", "default_weights", "default_voc_val"]


def _split_sets(text):
    """``"2007/trainval,2012/trainval"`` -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        year, sep, image_set = item.partition("/")
        if not sep:
            raise UsageError(f"image set {item!r} must look like 2007/trainval")
        out.append((year, image_set))
    return out


def _voc_records(root, sets):
    from ssd_keras.data.voc import read_voc
    records = []
    for year, image_set in sets:
        records.extend(read_voc(os.path.join(root, f"VOC{year}"), image_set))
    return records


def _own_data(args, config, tc):
    """``--data`` / ``--val-data`` -> ``(config with the data's classes, train, val records)``.

    Each source is said in one line (format, images, classes); the class
    names -- discovered from ``--data`` or fixed by ``--class-names`` -- go into
    the config (``num_classes``, ``class_names``, so into the run's
    config.json); ``--val-data`` is read with the same names (a class the
    training data lacks is a problem naming the file).  The validation images
    get the same decoding check as the training images
    (:func:`~ssd_keras.data.check.filter_bad_records`); its COCO ground truth
    is built from its records.
    """
    from ssd_keras.data.check import filter_bad_records
    from ssd_keras.data.check import load_training_data
    from ssd_keras.data.sources import config_for_classes, parse_class_names

    source = load_training_data(args.data, args.images, parse_class_names(args.class_names),
                                args.image_set, skip_bad=tc.skip_bad_records)
    print(source.describe(), flush=True)
    config = config_for_classes(config, source.class_names)
    val_records = None
    if args.val_data:
        val = load_training_data(args.val_data, args.val_images, source.class_names,
                                 args.val_image_set, skip_bad=tc.skip_bad_records,
                                 flag="--val-data")
        print(val.describe().replace("data:", "val-data:", 1), flush=True)
        val_records = filter_bad_records(val.records, skip_bad=tc.skip_bad_records)
    return config, source.records, val_records


def _own_data_recipe(args, config, num_images: int, overrides: dict):
    """The own-data recipe (:func:`ssd_keras.recipes.own_data_recipe`) for ``--data``; plan printed.

    ``--steps`` / ``--batch-size`` resize the recipe (its intervals and batch-norm
    momentum follow); the other schedule flags override its fields as usual.
    """
    from ssd_keras.recipes import DEFAULT_BATCH_SIZE, own_data_recipe

    batch = args.batch_size or DEFAULT_BATCH_SIZE
    epochs = args.steps * batch / num_images if args.steps else None
    config, tc, plan = own_data_recipe(num_images, config.class_names, batch_size=batch,
                                       epochs=epochs)
    rest = {k: v for k, v in overrides.items() if k not in ("total_steps", "batch_size")}
    rest.pop("bias_lr_multiplier", None)      # an SGD detail; the recipe uses Adam
    try:
        tc = tc.replace(**rest)
    except ValueError as error:
        raise SystemExit(f"train: {error}") from None
    print(plan.describe(), flush=True)
    return config, tc


def _preset_name(name: str) -> str:
    """argparse ``type`` of ``--preset``: an unknown name is a one-line usage error."""
    from ssd_keras import presets
    if name not in presets.names():
        raise argparse.ArgumentTypeError(f"unknown preset {name!r}; choose from "
                                         f"{', '.join(presets.names())}")
    return name


def _existing_file(path: str) -> str:
    """argparse ``type`` of a file flag: a missing file is a one-line usage error."""
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return path


def _strategy(name):
    import tensorflow as tf
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return multi_worker_strategy()
    return None


def default_weights(config, requested: Optional[str]) -> Optional[str]:
    """The ``--weights`` of the ``train`` command: notebook 01's ImageNet base by default.

    ``None`` (not given): ``"imagenet"`` for the VGG presets (random VGG cannot
    reach the reference 0.77 mAP), no initial weights otherwise.  ``"none"``:
    random weights, with a warning on stderr for the VGG presets.
    """
    vgg = config.architecture == "ssd_vgg16"
    if requested is None:
        return "imagenet" if vgg else None
    if requested.lower() == "none":
        if vgg:
            print(f"train: warning: --weights none starts {config.name} from a random VGG16 "
                  f"base; the reference recipe (0.77 mAP on VOC2007 test) starts from the "
                  f"ImageNet base (the default, --weights imagenet)", file=sys.stderr, flush=True)
        return None
    return requested


def default_voc_val(voc_root: str, requested: Optional[str]) -> Optional[str]:
    """The ``--val`` of the ``train`` command: ``"2007/test"`` when ``voc_root`` holds it.

    ``None`` (not given): VOC2007 test if its image list exists (notebook 01's
    validation loss and intermediate mAP), else no validation; ``"none"``: none.
    """
    if requested is None:
        test_list = os.path.join(voc_root, "VOC2007", "ImageSets", "Main", "test.txt")
        return "2007/test" if os.path.exists(test_list) else None
    return None if requested.lower() == "none" else requested


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` command."""
    from ssd_keras import presets
    from ssd_keras.config import DetectorConfig

    # --data with no --preset/--config/--train-config: the own-data recipe, sized to the data.
    use_recipe = bool(getattr(args, "data", None)) and not (
        args.preset or args.config or args.train_config)
    config = (DetectorConfig.from_json(args.config) if args.config
              else presets.get(args.preset or "ssd300_voc"))
    tc = (TrainConfig.from_json(args.train_config) if args.train_config
          else reference_train_config(config))
    overrides = {"total_steps": args.steps, "batch_size": args.batch_size,
                 "learning_rate": args.lr, "optimizer": args.optimizer,
                 "schedule": args.schedule, "warmup_steps": args.warmup_steps,
                 "steps_per_epoch": args.steps_per_epoch, "log_every": args.log_every,
                 "checkpoint_every": args.checkpoint_every, "backup_every": args.backup_every,
                 "eval_every": args.eval_every, "seed": args.seed,
                 "val_loss_images": args.val_loss_images,
                 "bias_lr_multiplier": args.bias_lr_multiplier}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for flag, field in (("mixed_precision", "mixed_precision"), ("jit_compile", "jit_compile"),
                        ("skip_bad_records", "skip_bad_records")):
        if getattr(args, flag):
            overrides[field] = True
    if args.no_augment:
        overrides["augment"] = False
    if args.scale_lr_with_replicas:
        overrides["scale_lr_with_replicas"] = True
    if args.optimizer == "adam" and args.bias_lr_multiplier is None:
        overrides["bias_lr_multiplier"] = 1.0      # the 2x bias rate is an SGD (Caffe) detail
    try:
        tc = tc.replace(**overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None

    coco_gt = None
    if args.voc_root:
        train_records = _voc_records(args.voc_root, _split_sets(args.image_sets))
        val_sets = default_voc_val(args.voc_root, args.val)
        val_records = _voc_records(args.voc_root, _split_sets(val_sets)) if val_sets else None
        metric = tc.eval_metric
    elif args.data:
        config, train_records, val_records = _own_data(args, config, tc)
        if use_recipe:
            config, tc = _own_data_recipe(args, config, len(train_records), overrides)
        metric = "coco"
    elif args.coco_json:
        from ssd_keras.data.coco import coco_label_map, read_coco
        from ssd_keras.data.sources import config_for_classes
        if not args.images:
            raise UsageError("--coco-json needs --images DIR")
        train_records = read_coco(args.coco_json, args.images)
        config = config_for_classes(config, coco_label_map(args.coco_json).class_names)
        val_records = None
        if args.val_coco_json:
            val_records = read_coco(args.val_coco_json, args.val_images or args.images)
            coco_gt = args.val_coco_json
        metric = "coco"
    else:
        raise UsageError("give --data PATH, --voc-root DIR or --coco-json FILE --images DIR")
    tc = tc.replace(eval_metric=metric)
    print(f"train: {config.name} on {len(train_records)} images -> {args.run_dir} "
          f"({tc.total_steps} steps, batch {tc.batch_size})", flush=True)
    strategy = _strategy(args.strategy)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if tc.batch_size % replicas:
        raise UsageError(f"--batch-size {tc.batch_size} (the global batch) does not split "
                         f"evenly over {replicas} replicas; use a multiple of {replicas}")
    try:
        _, history = train(config, train_records, run_dir=args.run_dir, train_config=tc,
                           val_records=val_records, eval_records=val_records,
                           strategy=strategy, coco_gt=coco_gt,
                           verbose=args.verbose, weights=default_weights(config, args.weights))
    except TrainingDiverged as error:
        print(f"train: {error}", file=sys.stderr)
        return 3
    except WorkerLost as error:
        print(f"train: {error}", file=sys.stderr, flush=True)
        return 4
    if len(history):
        print(history.tail(1).to_string(index=False), flush=True)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train", help="train (or resume) an SSD detector into a run folder",
        description="Train an SSD detector. Re-running the same command resumes from the "
                    "run folder's last backup.")
    p.add_argument("--preset", type=_preset_name,
                   help="detector preset (default: ssd300_voc; with --data and no --config / "
                        "--train-config, the own-data recipe of ssd_keras.recipes, sized to "
                        "the data)")
    p.add_argument("--config", type=_existing_file,
                   help="DetectorConfig JSON instead of a preset")
    p.add_argument("--train-config", type=_existing_file,
                   help="TrainConfig JSON (flags below override it)")
    p.add_argument("--data", metavar="PATH",
                   help="training data in any format: a folder (or .txt list) of Pascal VOC XML "
                        "files (labelImg, CVAT, Roboflow), a VOCdevkit year folder or a COCO "
                        "JSON; detected and said in one line; its class names go into the config")
    p.add_argument("--val-data", metavar="PATH",
                   help="validation data (same formats; loss curve and COCO mAP)")
    p.add_argument("--class-names", metavar="A,B,C",
                   help="fix the class names and their order (default: discovered from --data, "
                        "sorted); objects of other classes are problems")
    p.add_argument("--image-set", help="ImageSets/Main name when --data is a VOCdevkit year "
                                       "folder (default trainval)")
    p.add_argument("--val-image-set", help="the same for --val-data")
    p.add_argument("--voc-root", help="VOCdevkit folder holding VOC2007/, VOC2012/")
    p.add_argument("--image-sets", default="2007/trainval,2012/trainval",
                   help="training image sets YEAR/SET, comma-separated")
    p.add_argument("--val", help="validation image sets of --voc-root (loss curve and "
                                 "intermediate mAP); default 2007/test when --voc-root has it, "
                                 "'none' for no validation")
    p.add_argument("--coco-json", help="COCO-format training annotations")
    p.add_argument("--images", help="image folder of --coco-json or --data (--data: default "
                                     "beside the XML files / the JSON)")
    p.add_argument("--val-coco-json", help="COCO-format validation annotations")
    p.add_argument("--val-images", help="image folder of --val-coco-json or --val-data")
    p.add_argument("--run-dir", required=True, help="run folder (runs/NAME)")
    p.add_argument("--weights", help="initial weights of a new run: 'imagenet' (the reduced "
                                     "VGG16 base; the default for the VGG presets, as notebook "
                                     "01), a .weights.h5 / .keras / legacy .h5 file, or 'none' "
                                     "(random; warns for VGG)")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--batch-size", type=int,
                   help="images per step over all replicas (the global batch; default 32)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--schedule", choices=("piecewise", "cosine", "constant"))
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--backup-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--val-loss-images", type=int,
                   help="validation loss on this fixed subset of the --val images (default 500; "
                        "the mAP uses all of them)")
    p.add_argument("--bias-lr-multiplier", type=float,
                   help="biases train at this times the rate (default 2 for the VGG presets, "
                        "as Caffe SSD; 1 otherwise)")
    p.add_argument("--seed", type=int)
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--jit-compile", action="store_true")
    p.add_argument("--skip-bad-records", action="store_true")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--scale-lr-with-replicas", action="store_true",
                   help="multiply the learning rate by the number of replicas (linear scaling "
                        "rule; off by default: the batch is global, the rate as given)")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none")
    p.add_argument("--verbose", type=int, default=1, help="Keras verbosity (0, 1, 2)")
    p.set_defaults(func=run_train)
    return p


def main(argv=None) -> int:
    """Run ``train`` without the package-wide CLI: ``main(["--voc-root", ...])``."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "train", argv)


if __name__ == "__main__":
    sys.exit(main())

"""Training recipes sized to the data: the own-data fine-tuning recipe.

:func:`own_data_recipe` is what ``python -m ssd_keras train --data DIR`` uses
when no ``--preset``, ``--config`` or ``--train-config`` is given: a detector
for the user's classes and a schedule sized to the number of training images,
plus a :class:`RecipePlan` that says what will happen (printed before the first
step).  The VOC / COCO presets keep their reference schedule
(:class:`~ssd_keras.training.TrainConfig` defaults); nothing here changes them.

The detector: SSD MobileNet v2 at 320x320
(:func:`~ssd_keras.presets.ssd_mobilenet_v2_320` -- block-13 expansion and
the last 1280-channel layer plus four small extra layers, 1x1 conv heads, grid
anchors 0.2..0.95, sigmoid focal loss) from the shipped ImageNet MobileNetV2
backbone (``backbone={"imagenet_weights": True}``), with

* **backbone batch norm frozen** at its ImageNet statistics
  (``freeze_batch_norm``: the backbone's BatchNormalization layers are
  non-trainable, so they run in inference mode during training, as Keras
  transfer learning does).  With batches of 16 crops of 1-3 raccoons, batch
  statistics are a poor estimate of the ImageNet-trained ones, and
  moving averages at the TF OD momentum 0.997 would need ~2,300 steps to
  forget their start (0.997 ** 2300 = 0.001);
* **head batch-norm momentum sized to the run** (the extra layers' BN layers
  are trained from scratch): ``m = 0.001 ** (1 / (total_steps / 2))`` clipped
  to ``[0.9, 0.997]``, so that the initial moving statistics weigh less than
  0.1 % by mid-run and the evaluation-mode features match the training-mode
  ones.  Measured on the raccoon data (std of each extra-layer BN output on 16
  test photos, ``training=True`` over ``training=False``): after 30 steps at
  0.997 the ratios rose from 0.8 to 59x with depth (the "squashed eval features"
  of the failed FPNLite run); after 200 steps at the sized 0.933 they were
  1.05-1.24 on every layer (see ``benchmarks/RESULTS.md``);
* **the backbone's weights frozen for the first third** of the steps
  (``TrainConfig.freeze_backbone_steps``): the random head learns on fixed
  ImageNet features first, then everything fine-tunes **at a tenth of the
  rate** (``unfreeze_lr_factor=0.1``); frozen steps are also cheaper.
  Measured: unfreezing at the full Adam rate (~8e-4 there) wrecked the
  backbone within a few dozen steps -- the validation loss (eval mode) rose
  from 3.3 to 18 over 130 steps, the extra layers' inputs became constant
  over images (variance 6e-10) and the best box was the same strip on every
  image, AP 0.03 (with weight decay 4e-5; without it the validation loss still
  doubled within 14 steps of the unfreezing); at a tenth the validation loss
  keeps falling and AP50 after 200 steps is 0.91 against 0.72 with the
  backbone frozen throughout;
* **no weight decay** (``weight_decay=0``): with Adam an L2 term in the loss is
  normalised like any gradient, so on pretrained kernels whose detection
  gradient is small it moves every weight by ~the rate per step towards zero
  (the collapse above had weight decay 4e-5; Loshchilov & Hutter's AdamW
  argument); augmentation and the short schedule regularise instead;
* Adam at 1e-3, linear warm-up over 5 % of the steps from 0.1x, cosine decay
  to 0; SSD augmentation (photometric, expand, min-IoU crop, flip); fixed seed.

Sizing: ``epochs = clip(images_per_run / N, min_epochs, max_epochs)`` passes
over the ``N`` training images (``images_per_run`` 16,000 images: 1,000 steps
of 16 for sets of 160 to 1,333 images; 100 epochs below, 12 above),
``total_steps = ceil(epochs * N / batch)``.  Intervals
scale with the run: a log row every ``total/50`` steps, validation loss every
5 rows, a resume backup every ``total/10``, a weights checkpoint and an
intermediate mAP every ``total/5``.  The step count depends only on the data
size and the arguments, never on a measured time, so a run is reproducible;
the expected time is an estimate, stated as one.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional, Sequence, Tuple

# Measured CPU cost of one training image at 320x320 (forward + backward +
# input pipeline), on this project's reference machine (2 CPU cores, TF 2.21):
# with the backbone frozen, and fully trained.  See benchmarks/RESULTS.md.
CPU_SECONDS_PER_IMAGE_FROZEN = 0.045
CPU_SECONDS_PER_IMAGE_FULL = 0.115

DEFAULT_IMAGES_PER_RUN = 16000
UNFREEZE_LR_FACTOR = 0.1
DEFAULT_BATCH_SIZE = 16
MIN_EPOCHS, MAX_EPOCHS = 12, 100


@dataclasses.dataclass(frozen=True)
class RecipePlan:
    """What a recipe will do, in numbers (printed before the first step).

    Attributes:
        detector: the detector config's name.
        num_train_images: training images the recipe was sized for.
        epochs: passes over the training images.
        total_steps, batch_size, warmup_steps, freeze_backbone_steps: the schedule.
        log_every, val_every, backup_every, checkpoint_every, eval_every: intervals (steps).
        head_batch_norm_momentum: momentum of the head's BatchNormalization layers.
        expected_seconds: estimated training time (excluding model building).
        estimate: how ``expected_seconds`` was obtained (one line).
    """

    detector: str
    num_train_images: int
    epochs: float
    total_steps: int
    batch_size: int
    warmup_steps: int
    freeze_backbone_steps: int
    log_every: int
    val_every: int
    backup_every: int
    checkpoint_every: int
    eval_every: int
    head_batch_norm_momentum: float
    expected_seconds: float
    estimate: str

    def describe(self) -> str:
        """A few lines for the console."""
        minutes = self.expected_seconds / 60.0
        return "\n".join([
            f"plan: {self.detector} from the ImageNet MobileNetV2 backbone (batch norm frozen), "
            f"{self.num_train_images} training images",
            f"plan: {self.total_steps} steps x batch {self.batch_size} = {self.epochs:.3g} epochs; "
            f"warm-up {self.warmup_steps}, backbone frozen for the first "
            f"{self.freeze_backbone_steps} steps, then fine-tuned at {UNFREEZE_LR_FACTOR:g}x "
            f"the rate; Adam 1e-3, cosine decay; head BN momentum "
            f"{self.head_batch_norm_momentum:.4f}",
            f"plan: log every {self.log_every}, validation every {self.val_every}, backup every "
            f"{self.backup_every}, checkpoint + mAP every {self.checkpoint_every} steps",
            f"plan: expected training time ~{minutes:.1f} min ({self.estimate})",
        ])


def head_batch_norm_momentum(total_steps: int, residual: float = 1e-3) -> float:
    """Momentum whose initial moving statistics weigh ``residual`` after half the run.

    ``m ** (total_steps / 2) = residual``, clipped to ``[0.9, 0.997]`` (0.997 is
    the TF OD API decay, right for long runs).
    """
    m = residual ** (1.0 / max(total_steps / 2.0, 1.0))
    return float(min(max(m, 0.9), 0.997))


def own_data_detector(class_names: Sequence[str], total_steps: int,
                      image_size: int = 320):
    """The own-data detector: SSD MobileNet v2 for ``class_names`` (see module docstring).

    Args:
        class_names: names of labels ``1..K``.
        total_steps: the run length (sets the head batch-norm momentum).
        image_size: square input side in pixels (320: feature maps 20, 10, 5,
            3, 2, 1; other sizes change the grid).
    """
    from ssd_keras import presets

    names = tuple(str(n) for n in class_names)
    if not names:
        raise ValueError("own_data_detector: no class names")
    base = presets.get("ssd_mobilenet_v2_320")
    backbone = dict(base.backbone, imagenet_weights=True, freeze_batch_norm=True,
                    batch_norm_momentum=head_batch_norm_momentum(total_steps))
    return base.replace(name=f"ssd_mobilenet_v2_{image_size}_own_data", num_classes=len(names),
                        class_names=names, image_size=(image_size, image_size),
                        weight_decay=0.0, backbone=backbone)


def _round_to(value: float, multiple: int) -> int:
    """``value`` rounded to a positive multiple of ``multiple``."""
    return max(multiple, int(round(value / multiple)) * multiple)


def estimate_seconds(total_steps: int, batch_size: int, freeze_backbone_steps: int,
                     cores: Optional[int] = None) -> Tuple[float, str]:
    """Estimated training seconds on ``cores`` idle CPU cores (default ``os.cpu_count()``).

    From the measured per-image CPU costs :data:`CPU_SECONDS_PER_IMAGE_FROZEN`
    and :data:`CPU_SECONDS_PER_IMAGE_FULL`, divided by the cores (TF uses them
    all; the 2-core reference scales close to linearly).  A GPU is not
    modelled: there it is an upper bound.
    """
    cores = max(int(cores or os.cpu_count() or 1), 1)
    frozen = min(freeze_backbone_steps, total_steps)
    cpu = batch_size * (frozen * CPU_SECONDS_PER_IMAGE_FROZEN
                        + (total_steps - frozen) * CPU_SECONDS_PER_IMAGE_FULL)
    return cpu / cores, (f"estimate from the measured CPU cost per image on 2 cores, "
                         f"for {cores} idle core{'s' if cores > 1 else ''}")


def own_data_recipe(num_train_images: int, class_names: Sequence[str] = ("object",), *,
                    batch_size: int = DEFAULT_BATCH_SIZE,
                    images_per_run: int = DEFAULT_IMAGES_PER_RUN,
                    epochs: Optional[float] = None, image_size: int = 320,
                    seed: int = 0, cores: Optional[int] = None):
    """Detector, schedule and plan for fine-tuning on ``num_train_images`` own images.

    Args:
        num_train_images: training images (after the data check).
        class_names: the data's class names (labels ``1..K``).
        batch_size: images per step.
        images_per_run: training images seen in a run (before clipping the
            epochs to ``[12, 100]``); the default fits the raccoon benchmark
            (160 images) into about 18 minutes on 2 idle CPU cores.
        epochs: passes over the data instead of the sizing rule.
        image_size: model input side.
        seed: pipeline and initialisation seed.
        cores: CPU cores for the time estimate (default: this machine's).

    Returns:
        ``(DetectorConfig, TrainConfig, RecipePlan)``.
    """
    from ssd_keras.training.config import TrainConfig

    n = int(num_train_images)
    if n < 1:
        raise ValueError(f"own_data_recipe: need at least one training image, got {n}")
    if epochs is None:
        epochs = min(max(images_per_run / n, MIN_EPOCHS), MAX_EPOCHS)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = max(1, math.ceil(epochs * n / batch_size))
    warmup = max(1, round(0.05 * total))
    freeze = total // 3
    log_every = max(1, round(total / 50))
    val_every = log_every * 5
    backup_every = _round_to(total / 10, log_every)
    checkpoint_every = _round_to(total / 5, log_every)
    config = own_data_detector(class_names, total, image_size)
    tc = TrainConfig(
        optimizer="adam", learning_rate=1e-3, warmup_steps=warmup, warmup_start_factor=0.1,
        schedule="cosine", cosine_min_factor=0.0, total_steps=total, batch_size=batch_size,
        steps_per_epoch=steps_per_epoch, log_every=log_every, backup_every=backup_every,
        checkpoint_every=checkpoint_every, keep_checkpoints=5, val_every=val_every,
        eval_every=checkpoint_every, eval_metric="voc07", seed=seed, augment=True,
        freeze_backbone_steps=freeze, unfreeze_lr_factor=UNFREEZE_LR_FACTOR)
    seconds, how = estimate_seconds(total, batch_size, freeze, cores)
    plan = RecipePlan(
        detector=config.name, num_train_images=n, epochs=total * batch_size / n,
        total_steps=total, batch_size=batch_size, warmup_steps=warmup,
        freeze_backbone_steps=freeze, log_every=log_every, val_every=val_every,
        backup_every=backup_every, checkpoint_every=checkpoint_every,
        eval_every=checkpoint_every,
        head_batch_norm_momentum=config.backbone["batch_norm_momentum"],
        expected_seconds=seconds, estimate=how)
    return config, tc, plan

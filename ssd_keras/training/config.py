"""How to train: :class:`TrainConfig`, the schedule and run-length settings of one run.

Also :func:`reference_train_config`, the reference recipe of a detector config.
It depends on :mod:`ssd_keras.config` only, so the modules the trainer uses
(recipes, run reports) can build or read a train config without an import cycle.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from ssd_keras.config import JsonConfig

__all__ = ["TrainConfig", "reference_train_config"]


@dataclasses.dataclass
class TrainConfig(JsonConfig):
    """How to train (the detector itself is a :class:`~ssd_keras.config.DetectorConfig`).

    Defaults are the reference SSD300 VOC07+12 schedule: SGD momentum 0.9,
    lr 1e-3 with a 1000-step linear warm-up from 1e-4 (SGD at 1e-3 sometimes
    diverges in the first few hundred steps), x0.1 at 80k and 100k, 120k
    steps, batch 32.  ``schedule="cosine"`` is the TF OD API MobileNet recipe
    (cosine decay to ``cosine_min_factor * lr`` after the warm-up).

    Attributes:
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        learning_rate: base rate (the rate of the whole global batch; times the
            replica count only with ``scale_lr_with_replicas``).
        warmup_steps, warmup_start_factor: linear warm-up from
            ``warmup_start_factor * lr`` to ``lr`` over ``warmup_steps``.
        schedule: ``"piecewise"`` (``lr_boundaries``, ``lr_decay_factor``),
            ``"cosine"`` or ``"constant"``.
        total_steps: optimizer steps of the run.
        batch_size: images per step over all replicas (the *global* batch;
            each of ``R`` replicas sees ``batch_size / R``).
        steps_per_epoch: Keras "epoch" length (progress bars, ``epoch`` column).
        log_every: CSV row interval (default ``steps_per_epoch``).
        backup_every: resume-state interval (default ``log_every``).
        checkpoint_every, keep_checkpoints: weight checkpoints kept in ``checkpoints/``.
        val_every, val_steps: validation loss interval (default ``log_every``)
            and batches per validation (``None``: the whole validation set).
        val_loss_images: the validation loss is computed on this fixed,
            evenly spaced subset of ``val_records`` (``None``: all of them);
            the intermediate mAP always uses all of ``eval_records``.  500 of
            VOC2007 test's 4,952 images make a loss point a tenth of a full pass.
        eval_every, eval_metric: intermediate mAP interval and metric.
        mixed_precision: ``mixed_float16`` policy (restored afterwards).
        jit_compile: XLA-compile the train step.
        skip_bad_records: drop records the data checker rejects instead of failing.
        seed: data pipeline seed (``None``: random) and ``keras.utils.set_random_seed``.
        augment: SSD photometric/expand/crop/flip augmentation.
        clipnorm: gradient norm clipping (``None``: off).
        scale_lr_with_replicas: multiply the rate by the number of replicas
            (linear scaling rule; off by default: ``batch_size`` is global).
        bias_lr_multiplier: every bias trains at this times the rate (Caffe
            SSD: ``lr_mult 2`` on biases, set by :func:`reference_train_config`
            for the VGG presets; 1: off).  SGD only (see :class:`BiasLRSGD`).
        frozen_layers: layer names kept at their initial weights for the whole
            run (Caffe SSD: ``conv1_1 .. conv2_2`` of the ImageNet VGG16, set by
            :func:`reference_train_config`).
        freeze_backbone_steps: keep the backbone's weights fixed for this many
            first steps (head-only warm-up of a fine-tuning run, see
            :class:`~ssd_keras.callbacks.FreezeLayers`); 0: off.
        unfreeze_lr_factor: the rate is multiplied by this from
            ``freeze_backbone_steps`` on (the fine-tuning phase; 1: unchanged).
    """

    optimizer: str = "sgd"
    momentum: float = 0.9
    learning_rate: float = 1e-3
    warmup_steps: int = 1000
    warmup_start_factor: float = 0.1
    schedule: str = "piecewise"
    lr_boundaries: Tuple[int, ...] = (80000, 100000)
    lr_decay_factor: float = 0.1
    cosine_min_factor: float = 0.0
    total_steps: int = 120000
    batch_size: int = 32
    steps_per_epoch: int = 1000
    log_every: Optional[int] = None
    backup_every: Optional[int] = None
    checkpoint_every: int = 10000
    keep_checkpoints: int = 5
    val_every: Optional[int] = None
    val_steps: Optional[int] = None
    eval_every: int = 20000
    eval_metric: str = "voc07"
    mixed_precision: bool = False
    jit_compile: bool = False
    skip_bad_records: bool = False
    seed: Optional[int] = 0
    augment: bool = True
    clipnorm: Optional[float] = None
    scale_lr_with_replicas: bool = False
    bias_lr_multiplier: float = 1.0
    val_loss_images: Optional[int] = 500
    frozen_layers: Tuple[str, ...] = ()
    freeze_backbone_steps: int = 0
    unfreeze_lr_factor: float = 1.0

    def __post_init__(self):
        self.lr_boundaries = tuple(int(b) for b in self.lr_boundaries)
        self.frozen_layers = tuple(str(n) for n in self.frozen_layers)
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("piecewise", "cosine", "constant"):
            raise ValueError(f"schedule must be 'piecewise', 'cosine' or 'constant', "
                             f"got {self.schedule!r}")
        for name in ("total_steps", "batch_size", "steps_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_loss_images is not None and self.val_loss_images < 1:
            raise ValueError(f"val_loss_images must be >= 1 or None, got {self.val_loss_images}")
        if not self.bias_lr_multiplier > 0:
            raise ValueError(f"bias_lr_multiplier must be > 0, got {self.bias_lr_multiplier}")
        if self.bias_lr_multiplier != 1.0 and self.optimizer != "sgd":
            raise ValueError(
                f"bias_lr_multiplier={self.bias_lr_multiplier} needs optimizer='sgd' (Adam "
                f"normalises each gradient, so scaling it does not scale the step)")

    @property
    def log_interval(self) -> int:
        return int(self.log_every or self.steps_per_epoch)

    @property
    def backup_interval(self) -> int:
        return int(self.backup_every or self.log_interval)

    @property
    def val_interval(self) -> int:
        return int(self.val_every or self.log_interval)


def reference_train_config(config) -> TrainConfig:
    """The reference training recipe of a detector config or preset name.

    ``TrainConfig()`` is Caffe SSD's VOC schedule; for the VGG presets (the
    Caffe models: ``architecture == "ssd_vgg16"``) it adds the two solver
    details of ``ssd_pascal.py`` / ``model_libs.py``: the 2x bias learning
    rate (``bias_lr_multiplier=2``) and the frozen first four convolutions
    (``freeze_layers = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']``).
    Other architectures (MobileNet, digits) were not trained that way: plain
    ``TrainConfig()``.
    """
    if isinstance(config, str):
        from ssd_keras import presets
        config = presets.get(config)
    if config.architecture == "ssd_vgg16":
        return TrainConfig(bias_lr_multiplier=2.0,
                           frozen_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2"))
    return TrainConfig()


"""The learning-rate schedule and the optimizers of a run (functions of the step).

:class:`WarmupSchedule` is a function of ``optimizer.iterations``, so a resumed
run continues the schedule exactly; :class:`BiasLRSGD` is Caffe SSD's 2x bias
rate; :func:`make_optimizer` builds either from a
:class:`~ssd_keras.training.config.TrainConfig`.
"""
from __future__ import annotations

import math

import keras

from ssd_keras.training.config import TrainConfig

__all__ = ["WarmupSchedule", "BiasLRSGD", "is_bias", "make_optimizer"]


@keras.saving.register_keras_serializable(package="ssd_keras")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then piecewise-constant, cosine or constant; a function of the step.

    ``step`` is ``optimizer.iterations`` (updates done before this one):

    * ``step < warmup_steps``: ``lr * (f + (1 - f) * step / warmup_steps)``
      with ``f = warmup_start_factor``;
    * ``"piecewise"``: ``lr * decay_factor ** (number of boundaries <= step)``
      (so update 80001, at step 80000, is the first at the lower rate);
    * ``"cosine"``: ``lr * (m + (1 - m) * (1 + cos(pi * t)) / 2)`` with
      ``t = (step - warmup) / (total - warmup)`` clipped to ``[0, 1]``;
    * then, from ``fine_tune_step`` on (any schedule): times ``fine_tune_factor``
      -- the lower rate of the fine-tuning phase after a frozen-backbone start
      (``TrainConfig.freeze_backbone_steps`` / ``unfreeze_lr_factor``).
    """

    def __init__(self, learning_rate, warmup_steps=0, warmup_start_factor=0.1,
                 schedule="piecewise", boundaries=(), decay_factor=0.1, total_steps=1,
                 cosine_min_factor=0.0, fine_tune_step=0, fine_tune_factor=1.0):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_factor = float(warmup_start_factor)
        self.schedule = schedule
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_factor = float(decay_factor)
        self.total_steps = int(total_steps)
        self.cosine_min_factor = float(cosine_min_factor)
        self.fine_tune_step = int(fine_tune_step)
        self.fine_tune_factor = float(fine_tune_factor)

    @classmethod
    def from_train_config(cls, tc: TrainConfig, replicas: int = 1) -> "WarmupSchedule":
        scale = replicas if tc.scale_lr_with_replicas else 1
        return cls(tc.learning_rate * scale, tc.warmup_steps, tc.warmup_start_factor,
                   tc.schedule, tc.lr_boundaries, tc.lr_decay_factor, tc.total_steps,
                   tc.cosine_min_factor, tc.freeze_backbone_steps, tc.unfreeze_lr_factor)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.schedule == "piecewise" and self.boundaries:
            passed = sum(ops.cast(step >= b, "float32") for b in self.boundaries)
            lr = lr * ops.power(ops.convert_to_tensor(self.decay_factor, "float32"), passed)
        elif self.schedule == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            t = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            m = self.cosine_min_factor
            lr = lr * (m + (1.0 - m) * 0.5 * (1.0 + ops.cos(math.pi * t)))
        if self.warmup_steps > 0:
            f = self.warmup_start_factor
            ramp = f + (1.0 - f) * step / self.warmup_steps
            lr = ops.where(step < self.warmup_steps, lr * ramp, lr)
        if self.fine_tune_factor != 1.0 and self.fine_tune_step > 0:
            lr = ops.where(step >= self.fine_tune_step, lr * self.fine_tune_factor, lr)
        return lr

    def value(self, step: int) -> float:
        """The rate at ``step`` as a Python float."""
        return float(keras.ops.convert_to_numpy(self(step)))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "warmup_start_factor": self.warmup_start_factor, "schedule": self.schedule,
                "boundaries": list(self.boundaries), "decay_factor": self.decay_factor,
                "total_steps": self.total_steps, "cosine_min_factor": self.cosine_min_factor,
                "fine_tune_step": self.fine_tune_step, "fine_tune_factor": self.fine_tune_factor}


def is_bias(variable) -> bool:
    """Whether a Keras variable is a layer's additive bias (``.../bias``; not BN's ``beta``)."""
    return variable.path.split("/")[-1] == "bias"


@keras.saving.register_keras_serializable(package="ssd_keras")
class BiasLRSGD(keras.optimizers.SGD):
    """SGD in which every bias trains at ``bias_lr_multiplier`` times the rate.

    Caffe SSD (``model_libs.py``) gives every convolution ``param {lr_mult: 1,
    decay_mult: 1} param {lr_mult: 2, decay_mult: 0}``: biases move at twice
    the base rate and have no weight decay.  Caffe's SGD, ``v = m v + lr_mult
    * lr * g``, is linear in ``g``, so multiplying the bias gradients by the
    multiplier before the update is exactly ``lr_mult`` (momentum included, at
    every rate of the schedule).  It is done in :meth:`apply`, the public
    entry every update goes through (``apply_gradients``, the
    ``LossScaleOptimizer`` of mixed precision, which passes unscaled
    gradients, ``jit_compile`` and ``tf.distribute`` replicas alike), so the
    train step stays Keras' own.  The optimizer's variables are plain SGD's:
    a backup restores it like any SGD.  With ``clipnorm`` a bias gradient is
    clipped after the multiplication (Caffe clips before ``lr_mult``; the
    reference recipe does not clip).  Which variables are biases: :func:`is_bias`.
    """

    def __init__(self, bias_lr_multiplier=2.0, **kwargs):
        super().__init__(**kwargs)
        self.bias_lr_multiplier = float(bias_lr_multiplier)
        self._bias_flags = ()

    def build(self, variables):
        super().build(variables)
        self._bias_flags = tuple(is_bias(v) for v in variables)

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        flags = (self._bias_flags if trainable_variables is None
                 else [is_bias(v) for v in trainable_variables])
        if len(flags) == len(grads):
            grads = [g * self.bias_lr_multiplier if flag and g is not None else g
                     for g, flag in zip(grads, flags)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "bias_lr_multiplier": self.bias_lr_multiplier}


def make_optimizer(tc: TrainConfig, schedule) -> keras.optimizers.Optimizer:
    """SGD (momentum; :class:`BiasLRSGD` with ``bias_lr_multiplier``) or Adam on ``schedule``."""
    kwargs = {"clipnorm": tc.clipnorm} if tc.clipnorm else {}
    if tc.optimizer == "sgd":
        if tc.bias_lr_multiplier != 1.0:
            return BiasLRSGD(tc.bias_lr_multiplier, learning_rate=schedule,
                             momentum=tc.momentum, **kwargs)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=tc.momentum, **kwargs)
    return keras.optimizers.Adam(learning_rate=schedule, **kwargs)

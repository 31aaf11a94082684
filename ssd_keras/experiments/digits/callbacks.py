"""Callbacks of the digits job: a graceful time budget and a progress line with an ETA."""
from __future__ import annotations

import time
from typing import Optional

import keras


def duration(seconds: float) -> str:
    """``754.2`` -> ``"12m34s"``."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class TimeBudget(keras.callbacks.Callback):
    """Stop ``fit`` gracefully at ``deadline`` (``time.monotonic()`` seconds; ``None``: never)."""

    def __init__(self, deadline: Optional[float]):
        super().__init__()
        self.deadline = deadline
        self.stopped_at = None

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stopped_at = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.model.stop_training = True


class ProgressLine(keras.callbacks.Callback):
    """A line every ``every`` steps: step, losses, steps/s, elapsed, ETA."""

    def __init__(self, total_steps: int, every: int, deadline: Optional[float] = None,
                 print_fn=print):
        super().__init__()
        self.total_steps = int(total_steps)
        self.every = int(every)
        self.deadline = deadline
        self.print_fn = print_fn

    def on_train_begin(self, logs=None):
        self._t0 = self._tl = time.monotonic()
        self._sl = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._start = self._sl
        self._expected_said = False

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every and step != self.total_steps:
            return
        now = time.monotonic()
        rate = (step - self._sl) / max(now - self._tl, 1e-9)
        elapsed = now - self._t0
        overall = (step - self._start) / max(elapsed, 1e-9)
        eta = (self.total_steps - step) / max(overall, 1e-9)
        if self.deadline is not None:
            eta = min(eta, max(self.deadline - now, 0.0))
        logs = logs or {}
        losses = " ".join(f"{k.replace('_loss', '')}={float(v):.4f}" for k, v in logs.items()
                          if k.endswith("loss") and k != "regularization_loss")
        if not self._expected_said and step > self._start:
            # the first interval includes tracing, so the estimate errs long
            self.print_fn(f"expected training time about {duration(elapsed + eta)} at the "
                          f"{overall:.2f} steps/s of the first {step - self._start} steps "
                          f"on this machine now", flush=True)
            self._expected_said = True
        self.print_fn(f"step {step}/{self.total_steps}  {losses}  {rate:.2f} steps/s  "
                      f"elapsed {duration(elapsed)}  ETA {duration(eta)}", flush=True)
        self._tl, self._sl = now, step

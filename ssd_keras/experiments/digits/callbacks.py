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
    """A line every ``every`` steps: step, losses, steps/s, elapsed, ETA.

    At the second line it also prints the expected training time, from the
    steady rate since the first line (the first interval includes building
    and tracing the step, which would make the estimate long).
    """

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
        self._first_line = None          # (time, step) of the first progress line

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
        if self._first_line is None:
            self._first_line = (now, step)
        elif not self._expected_said:
            # from the second interval on: the first one includes building and tracing
            t1, s1 = self._first_line
            steady = (step - s1) / max(now - t1, 1e-9)
            expected = (t1 - self._t0) + (self.total_steps - s1) / max(steady, 1e-9)
            self.print_fn(f"expected training time about {duration(expected)} at the "
                          f"{steady:.2f} steps/s of steps {s1}-{step} on this machine now",
                          flush=True)
            self._expected_said = True
        self.print_fn(f"step {step}/{self.total_steps}  {losses}  {rate:.2f} steps/s  "
                      f"elapsed {duration(elapsed)}  ETA {duration(eta)}", flush=True)
        self._tl, self._sl = now, step

"""The layout of a run folder (see :mod:`ssd_keras.training` for what each file holds)."""
from __future__ import annotations

import os

__all__ = ["run_paths"]


def run_paths(run_dir: str) -> dict:
    """The files and folders of a run (see module docstring)."""
    return {
        "config": os.path.join(run_dir, "config.json"),
        "train_config": os.path.join(run_dir, "train_config.json"),
        "checkpoints": os.path.join(run_dir, "checkpoints"),
        "backup": os.path.join(run_dir, "backup"),
        "train_log": os.path.join(run_dir, "logs", "train_log.csv"),
        "tensorboard": os.path.join(run_dir, "logs", "tensorboard"),
        "metrics": os.path.join(run_dir, "metrics"),
        "intermediate_map": os.path.join(run_dir, "metrics", "intermediate_map.csv"),
        "model": os.path.join(run_dir, "model.keras"),
        "metrics_json": os.path.join(run_dir, "metrics.json"),
        "plots": os.path.join(run_dir, "plots"),
    }

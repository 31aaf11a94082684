"""The layout of a run folder: everything about one run of :func:`ssd_keras.training.train`::

    run_dir/config.json              DetectorConfig
    run_dir/train_config.json        TrainConfig
    run_dir/backup/                  resume state (weights + optimizer + step), every backup_every steps
    run_dir/checkpoints/             ckpt-<step>.weights.h5 every checkpoint_every steps (last 5 kept)
    run_dir/logs/train_log.csv       one row per log_every steps (see ssd_keras.callbacks.TrainLogger)
    run_dir/logs/tensorboard/        the same scalars as TensorBoard events
    run_dir/metrics/intermediate_map.csv   mAP every eval_every steps (with eval records)
    run_dir/model.keras              the final model
    run_dir/metrics.json             COCO numbers on the validation data (end of run)
    run_dir/plots/                   loss curves and a detection gallery (see ssd_keras.run_report)

In a multi-worker run only the chief writes ``run_dir``; other workers write
the same layout under ``run_dir/workers/<task>/``.
"""
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

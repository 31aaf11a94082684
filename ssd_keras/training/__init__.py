"""Training: config, schedule, run folder + resume, ``fit()`` wiring, CLI -- one module per idea.

=========================  ==========================================================
:mod:`.config`             :class:`TrainConfig` (how to train), :func:`reference_train_config`
:mod:`.schedule`           :class:`WarmupSchedule` (the rate as a function of the step),
                           :class:`BiasLRSGD` (Caffe's 2x bias rate), :func:`make_optimizer`
:mod:`.run_folder`         :func:`run_paths`: the files of one run
:mod:`.distribute`         :func:`multi_worker_strategy`, :class:`WorkerLost`
:mod:`.fit`                :func:`train` (new run or resume), :func:`make_loss_evaluator`
:mod:`.cli`                ``python -m ssd_keras train`` (:func:`register`, :func:`main`)
=========================  ==========================================================

The public names are re-exported here: ``from ssd_keras.training import train, TrainConfig``.
"""
from ssd_keras.callbacks import TrainingDiverged
from ssd_keras.training.cli import main, register
from ssd_keras.training.config import TrainConfig, reference_train_config
from ssd_keras.training.distribute import WorkerLost, multi_worker_strategy, unreachable_peers
from ssd_keras.training.fit import make_loss_evaluator, train
from ssd_keras.training.run_folder import run_paths
from ssd_keras.training.schedule import BiasLRSGD, WarmupSchedule, is_bias, make_optimizer

__all__ = ["TrainConfig", "WarmupSchedule", "TrainingDiverged", "train", "make_optimizer",
           "BiasLRSGD", "is_bias", "reference_train_config", "multi_worker_strategy",
           "WorkerLost", "unreachable_peers",
           "make_loss_evaluator", "run_paths", "register", "main"]

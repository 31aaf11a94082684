"""Multi-worker training: a ``MultiWorkerMirroredStrategy`` that fails instead of hanging.

``MultiWorkerMirroredStrategy`` reads ``TF_CONFIG``; only the chief writes the
run folder, other workers write theirs under ``run_dir/workers/<task>/``
(:func:`worker_task`).  A lost peer ends the run with :class:`WorkerLost`
naming it (:func:`unreachable_peers`).
"""
from __future__ import annotations

import json
import os

__all__ = ["WorkerLost", "multi_worker_strategy", "unreachable_peers", "cluster_peers",
           "worker_task"]


class WorkerLost(RuntimeError):
    """A multi-worker run lost a peer; ``lost`` names the unreachable workers (``"worker 1 (host:port)"``)."""

    def __init__(self, message, lost=()):
        super().__init__(message)
        self.lost = tuple(lost)


def cluster_peers():
    """``[(task name, "host:port")]`` of the other tasks in ``TF_CONFIG`` (empty: one process)."""
    try:
        spec = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        return []
    me = spec.get("task", {})
    peers = []
    for kind, addresses in spec.get("cluster", {}).items():
        for index, address in enumerate(addresses):
            if (kind, index) != (me.get("type"), int(me.get("index", 0))):
                peers.append((f"{kind} {index}", address))
    return peers


def unreachable_peers(timeout: float = 2.0) -> list:
    """The ``TF_CONFIG`` peers whose gRPC port refuses a TCP connection: ``["worker 1 (h:p)"]``."""
    import socket
    lost = []
    for name, address in cluster_peers():
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
        except OSError:
            lost.append(f"{name} ({address})")
    return lost


def multi_worker_strategy(timeout_seconds: float = 600.0):
    """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` that fails instead of hanging.

    * Every collective (gradient all-reduce, the loss normaliser, metric
      reductions) gives up after ``timeout_seconds`` without an answer from
      every worker (``CommunicationOptions(timeout_seconds=...)``), so a lost
      worker ends the others' step with an error rather than a wait forever;
      :func:`train` then names the worker that no longer answers
      (:class:`WorkerLost`).  It must exceed the longest legitimate gap
      between two collectives (an intermediate-mAP evaluation runs on every
      worker at the same step, so it does not count).
    * ``reduce`` accepts nested structures and scalars with ``axis=0``:
      Keras 3's ``fit`` asks the strategy for both (keras-team/keras#20585,
      ``ValueError: Attempt to convert a value (PerReplica ...)``), which
      ``MirroredStrategy`` handles and ``MultiWorkerMirroredStrategy`` does
      not; this is an override of the public ``Strategy.reduce``, leaf by leaf.
    """
    import tensorflow as tf

    class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            parent = super().reduce

            def one(leaf):
                first = (leaf.values[0] if isinstance(leaf, tf.distribute.DistributedValues)
                         else leaf)
                rank = getattr(getattr(first, "shape", None), "rank", None)
                return parent(reduce_op, leaf, None if rank == 0 else axis)
            return tf.nest.map_structure(one, value)

    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(timeout_seconds))
    return _MultiWorkerMirroredStrategy(communication_options=options)


def worker_task():
    """``(is_chief, task name)`` from ``TF_CONFIG`` (single process: chief)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except ValueError:
        task = {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None:
        return True, "chief"
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return chief, f"{kind}_{index}"

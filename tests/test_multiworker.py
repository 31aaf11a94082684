"""A real MultiWorkerMirroredStrategy run: two worker processes on 127.0.0.1.

Each process gets its own ``TF_CONFIG`` (free local ports) and trains the tiny
test model on a generated VOC tree with :func:`ssd_keras.training.multi_worker_strategy`:

1. a 2-step run: both exit 0; the chief (worker 0) writes the run folder, the
   other worker writes only under ``run_dir/workers/worker_1/``;
2. the same command again with more steps resumes both from their backups and
   continues; then worker 1 is killed (SIGKILL) mid-run: worker 0 ends by
   itself within a bounded time with :class:`~ssd_keras.training.WorkerLost`
   naming ``worker 1 (127.0.0.1:PORT)`` -- never a hang.

Every wait is bounded; processes still alive at the end are killed.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import keras
    from tests.tiny_models import tiny_config
    from ssd_keras.data.voc import read_voc
    from ssd_keras.training import TrainConfig, WorkerLost, multi_worker_strategy, train

    class Slow(keras.callbacks.Callback):       # time for the test to kill a worker mid-run
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(float(os.environ["STEP_SLEEP"]))

    strategy = multi_worker_strategy(timeout_seconds=30)
    tc = TrainConfig(total_steps=int(os.environ["STEPS"]), batch_size=4, steps_per_epoch=2,
                     log_every=1, backup_every=1, checkpoint_every=100, warmup_steps=0,
                     learning_rate=1e-3, augment=False, seed=1)
    records = read_voc({voc!r}, "trainval")
    try:
        model, _ = train(tiny_config(), records, run_dir={run!r}, train_config=tc,
                         strategy=strategy, callbacks=[Slow()], verbose=2)
    except WorkerLost as error:
        print("WORKER_LOST", error, flush=True)
        os._exit(4)    # (TF's coordination service would wait ~30 s at exit for the lost peer)
    print("REPLICAS", strategy.num_replicas_in_sync, "FINAL_STEP",
          int(model.optimizer.iterations.numpy()), flush=True)
""")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(script, steps, step_sleep, log_dir):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
               "KERAS_BACKEND": "tensorflow", "STEPS": str(steps), "STEP_SLEEP": str(step_sleep),
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        out = open(os.path.join(log_dir, f"worker{index}_{steps}.txt"), "w")
        procs.append((subprocess.Popen([sys.executable, str(script)], env=env, stdout=out,
                                       stderr=subprocess.STDOUT), out))
    return procs, ports


def _wait(procs, deadline):
    for proc, out in procs:
        try:
            proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            pass
        out.close()


def _kill_all(procs):
    for proc, out in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        out.close()


def _output(log_dir, index, steps):
    with open(os.path.join(log_dir, f"worker{index}_{steps}.txt")) as handle:
        return handle.read()


def _log_rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [line.split(",")[0] for line in handle.read().splitlines()[1:]]


@pytest.mark.slow
def test_two_workers_run_resume_and_lost_worker(tmp_path):
    from ssd_keras.data.toy import make_voc_tree

    voc = make_voc_tree(tmp_path / "data", num_images=8, size=(64, 48), quirks=False)
    run = str(tmp_path / "run")
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT.format(root=ROOT, voc=voc, run=run))
    logs = str(tmp_path)

    # 1. Two steps on two workers: both finish, the chief owns the run folder.
    procs, _ = _launch(script, 2, 0.0, logs)
    try:
        _wait(procs, time.time() + 240)
    finally:
        _kill_all(procs)
    for index, (proc, _) in enumerate(procs):
        assert proc.returncode == 0, _output(logs, index, 2)[-3000:]
        assert "REPLICAS 2 FINAL_STEP 2" in _output(logs, index, 2)
    assert {"backup", "config.json", "logs", "model.keras", "train_config.json",
            "workers"} <= set(os.listdir(run))
    assert os.listdir(os.path.join(run, "workers")) == ["worker_1"]
    worker_dir = os.path.join(run, "workers", "worker_1")
    assert os.path.exists(os.path.join(worker_dir, "backup", "latest.weights.h5"))
    assert not os.path.exists(os.path.join(worker_dir, "model.keras"))   # only the chief's
    assert _log_rows(os.path.join(run, "logs", "train_log.csv")) == ["1", "2"]

    # 2. The same command with 40 steps resumes both workers at step 2 and continues;
    #    killing worker 1 mid-run ends worker 0 with an error naming it, in bounded time.
    procs, ports = _launch(script, 40, 0.3, logs)
    chief_log = os.path.join(run, "logs", "train_log.csv")
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(_log_rows(chief_log)) < 5:
            assert procs[0][0].poll() is None, _output(logs, 0, 40)[-3000:]
            time.sleep(0.2)
        assert len(_log_rows(chief_log)) >= 5, _output(logs, 0, 40)[-3000:]
        procs[1][0].send_signal(signal.SIGKILL)
        killed = time.time()
        procs[0][0].wait(timeout=120)
        ended_after = time.time() - killed
    finally:
        _kill_all(procs)
    chief = _output(logs, 0, 40)
    for index in range(2):
        assert "resuming" in _output(logs, index, 40) and "from step 2" in _output(logs, index, 40)
    assert procs[0][0].returncode == 4, chief[-3000:]
    lost_line = next(line for line in chief.splitlines() if line.startswith("WORKER_LOST"))
    assert f"worker 1 (127.0.0.1:{ports[1]}) is lost" in lost_line
    assert ended_after < 120
    rows = _log_rows(chief_log)
    assert rows[:5] == ["1", "2", "3", "4", "5"] and len(rows) == len(set(rows))
    print(f"worker 0 ended {ended_after:.1f} s after worker 1 was killed: {lost_line[:160]}")

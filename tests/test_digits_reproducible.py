"""The digits job gives the same model on a busy machine as on a quiet one (issue 11).

Two runs of the same short recipe in fresh interpreters, the second while two
busy-looping subprocesses compete for the CPU cores: same step count, the
same loss log and the same COCO metrics.  The default recipe is a fixed number
of optimiser steps with a fixed seed (stateless crop stream, seeded
initialisation), so only the wall time may differ.
"""
import csv
import json
import subprocess
import sys

import pytest

from ssd_keras.data.digits import generate_digits_dataset

RUN = ("import sys\n"
       "from ssd_keras.experiments.digits import job\n"
       "sys.exit(job.main(sys.argv[1:]))\n")
BUSY = "while True:\n    pass\n"
#: loss values may differ by the CPU kernels' summation order only
LOSS_RTOL = 1e-4


def _run(out, data, env_note=""):
    args = ["--out", str(out), "--data-dir", str(data), "--figures-dir", "none",
            "--train-images", "8", "--test-images", "4", "--steps", "30", "--batch-size", "4"]
    res = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, env_note + res.stderr[-3000:]
    with open(out / "logs" / "train_log.csv") as f:
        log = list(csv.DictReader(f))
    return (json.loads((out / "metrics.json").read_text()),
            json.loads((out / "run_info.json").read_text()), log, res.stdout)


def _losses(log):
    return [{k: float(v) for k, v in row.items() if k.endswith("_loss")} for row in log]


def test_same_metrics_on_a_loaded_machine(tmp_path):
    data = tmp_path / "data"
    generate_digits_dataset(str(data), {"train": 8, "test": 4}, seed=7, progress=False)
    quiet = _run(tmp_path / "quiet", data)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        loaded = _run(tmp_path / "loaded", data, "(loaded run) ")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    (m1, info1, log1, out1), (m2, info2, log2, _) = quiet, loaded
    assert info1["steps_done"] == info2["steps_done"] == 30
    assert "expected training time" in out1
    assert [r["step"] for r in log1] == [r["step"] for r in log2]
    for a, b in zip(_losses(log1), _losses(log2)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=LOSS_RTOL), k
    for k in ("AP", "AP50", "AP75", "AR100"):
        assert m1[k] == pytest.approx(m2[k], abs=1e-6), k

"""Reports from run folders: loss plots, the per-class AP x steps table, experiment tables.

Everything reads the files :func:`ssd_keras.training.train` and the
evaluation write (``logs/train_log.csv``, ``metrics/intermediate_map.csv``,
``metrics.json``, ``config.json``, ``train_config.json``) and produces the
shapes of the reference write-ups:

* :func:`plot_loss_history` -- training and validation total loss against
  steps, with and without weight decay, learning-rate drops of step-wise
  schedules marked (the SSD300 VOC07+12 "loss history").
* :func:`plot_loss_components` -- one ``Loss_<name>.svg`` (+ PNG) per loss
  column of the run's own log, as in "Experiment 01": an SSD run's
  ``Loss_classification_loss``, ``Loss_localization_loss``,
  ``Loss_regularization_loss``, ``Loss_total_loss``; a CenterNet run's
  ``Loss_object_center_loss``, ``Loss_box_scale_loss``, ``Loss_box_offset_loss``, ...
* :func:`ap_table` / :func:`ap_table_markdown` -- classes x steps (20k, 40k,
  ...) plus an ``mAP`` row.
* :func:`experiment_tables` / :func:`tables_markdown` -- the research log's
  runs, Average Precision, Average Recall and loss tables.

Figures are written as SVG and PNG (``figures/`` by default).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

AP_COLUMNS = (("AP", "mAP"), ("AP50", "mAP @.50IOU"), ("AP75", "mAP @.75IOU"),
              ("APs", "mAP (small)"), ("APm", "mAP (medium)"), ("APl", "mAP (large)"))
AR_COLUMNS = (("AR1", "AR@1"), ("AR10", "AR@10"), ("AR100", "AR@100"),
              ("ARs", "AR@100 (small)"), ("ARm", "AR@100 (medium)"), ("ARl", "AR@100 (large)"))
#: the research log's loss-table order for the SSD names; any other family's
#: components follow in their log's order, then ``regularization_loss``, ``total_loss``.
LOSS_TABLE_FIRST = ("localization_loss", "classification_loss")
_LOSS_TABLE_LAST = ("regularization_loss", "total_loss")


def loss_columns(columns: Sequence[str]) -> list:
    """The training-loss columns of a train log, in order: its family's components,
    ``regularization_loss``, ``total_loss`` (``val_*`` and other columns left out)."""
    own = [c for c in columns if str(c).endswith("_loss") and not str(c).startswith("val_")]
    components = [c for c in own if c not in _LOSS_TABLE_LAST]
    return components + [c for c in _LOSS_TABLE_LAST if c in own]


def loss_table_columns(per_run: Sequence[Sequence[str]]) -> list:
    """The loss table's columns for runs with these loss columns (each :func:`loss_columns`).

    SSD runs give the research log's ``localization_loss, classification_loss,
    regularization_loss, total_loss``; a CenterNet run adds ``object_center_loss,
    box_scale_loss, box_offset_loss`` (other runs' cells there are empty).
    """
    seen = [c for c in LOSS_TABLE_FIRST if any(c in cols for cols in per_run)]
    for cols in per_run:
        seen += [c for c in cols if c not in seen and c not in _LOSS_TABLE_LAST]
    return seen + list(_LOSS_TABLE_LAST)


def _pyplot():
    import matplotlib
    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_path: str, formats=("svg", "png")) -> list:
    """Save ``fig`` as ``<stem>.svg`` and ``<stem>.png``; return the paths."""
    stem, ext = os.path.splitext(out_path)
    if ext.lower() not in (".svg", ".png", ".pdf"):
        stem = out_path
    os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _finish_steps_plot(fig, ax, ylabel: str, title: str, out_path):
    """Label a quantity-against-steps plot, save it (SVG + PNG) if ``out_path``; ``(fig, paths)``."""
    ax.set_xlabel("steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return fig, (_save(fig, out_path) if out_path else [])


# ----------------------------------------------------------------------------- loading

def _load_run_csv(run_dir_or_csv, *relative) -> pd.DataFrame:
    """A DataFrame as is, a CSV path, or ``run_dir/<relative...>`` of a run folder."""
    if isinstance(run_dir_or_csv, pd.DataFrame):
        return run_dir_or_csv
    path = os.fspath(run_dir_or_csv)
    if os.path.isdir(path):
        path = os.path.join(path, *relative)
    return pd.read_csv(path)


def load_train_log(run_dir_or_csv) -> pd.DataFrame:
    """``logs/train_log.csv`` of a run folder (or a CSV path / a DataFrame) as a DataFrame."""
    return _load_run_csv(run_dir_or_csv, "logs", "train_log.csv")


def load_map_history(run_dir_or_csv) -> pd.DataFrame:
    """``metrics/intermediate_map.csv`` (``step, map, <class>...``) as a DataFrame."""
    return _load_run_csv(run_dir_or_csv, "metrics", "intermediate_map.csv")


def _run_name(run) -> str:
    if isinstance(run, pd.DataFrame):
        return "run"
    path = os.fspath(run).rstrip(os.sep)
    if path.endswith(".csv"):
        path = os.path.dirname(os.path.dirname(path)) or path
    return os.path.basename(path)


SMOOTH_SCHEDULES = ("cosine", "constant")


def run_schedule(run) -> Optional[str]:
    """The ``schedule`` of a run folder's ``train_config.json`` (``None`` if unknown)."""
    if isinstance(run, pd.DataFrame):
        return None
    path = os.fspath(run)
    if path.endswith(".csv"):
        path = os.path.dirname(os.path.dirname(path))
    return _read_json(os.path.join(path, "train_config.json")).get("schedule")


def learning_rate_drops(log: pd.DataFrame, schedule: Optional[str] = None) -> list:
    """Steps where a step-wise schedule dropped the learning rate (what the loss plots mark).

    A drop is a row whose ``learning_rate`` is lower than the previous row's
    *and* which borders a plateau (the rate is equal in the two rows before, or
    in this row and the next): a piecewise-constant schedule. A smooth schedule
    (``schedule`` ``"cosine"`` / ``"constant"``, or a rate that falls at every
    row) has no drops to mark; warm-up rows rise and are never drops.
    """
    if schedule in SMOOTH_SCHEDULES or "learning_rate" not in log or len(log) < 2:
        return []
    lr = log["learning_rate"].to_numpy(float)
    steps = log["step"].to_numpy()

    def same(i, j):
        return 0 <= i < len(lr) and 0 <= j < len(lr) and abs(lr[i] - lr[j]) <= 1e-6 * abs(lr[j])
    return [int(steps[i]) for i in range(1, len(lr))
            if lr[i] < lr[i - 1] * (1 - 1e-6) and (same(i - 1, i - 2) or same(i, i + 1))]


def detection_loss(log: pd.DataFrame, prefix: str = "") -> Optional[np.ndarray]:
    """``total_loss - regularization_loss`` (the loss without weight decay), or ``None``."""
    total, reg = f"{prefix}total_loss", f"{prefix}regularization_loss"
    if total not in log or reg not in log:
        return None
    return (log[total] - log[reg]).to_numpy(float)


# ----------------------------------------------------------------------------- loss plots

def plot_loss_history(runs, out_path: Optional[str] = "figures/loss_history", names=None,
                      title: str = "Training and validation loss", log_scale: bool = False):
    """Training (solid) and validation (dashed) total loss against steps, lr drops marked.

    Each total is drawn twice: with the weight-decay term (``total_loss``, what
    the optimizer minimises) and without it (``total_loss - regularization_loss``,
    the detection loss; fainter), labelled -- a run from pretrained weights
    starts with a large weight-decay term that says nothing about detection.
    Learning-rate drops are marked only for step-wise schedules
    (:func:`learning_rate_drops`).

    Args:
        runs: a run folder / CSV / DataFrame, or a list of them.
        out_path: file stem (``.svg`` and ``.png`` written); ``None``: not saved.
        names: legend names (default: run folder names).

    Returns:
        ``(figure, paths)``.
    """
    plt = _pyplot()
    if isinstance(runs, (str, os.PathLike, pd.DataFrame)):
        runs = [runs]
    names = list(names) if names else [_run_name(r) for r in runs]
    fig, ax = plt.subplots(figsize=(8, 5))
    drops_drawn = False
    for i, (run, name) in enumerate(zip(runs, names)):
        log = load_train_log(run)
        colour = f"C{i}"
        ax.plot(log["step"], log["total_loss"], color=colour,
                label=f"{name} training (with weight decay)")
        without = detection_loss(log)
        if without is not None:
            ax.plot(log["step"], without, color=colour, alpha=0.55,
                    label=f"{name} training, without weight decay")
        if "val_total_loss" in log and log["val_total_loss"].notna().any():
            val = log[log["val_total_loss"].notna()]
            ax.plot(val["step"], val["val_total_loss"], color=colour, linestyle="--",
                    label=f"{name} validation (with weight decay)")
            val_without = detection_loss(val, "val_")
            if val_without is not None:
                ax.plot(val["step"], val_without, color=colour, linestyle="--", alpha=0.55,
                        label=f"{name} validation, without weight decay")
        for step in learning_rate_drops(log, run_schedule(run)):
            ax.axvline(step, color=colour, linestyle=":", alpha=0.7,
                       label=None if drops_drawn else "learning-rate drop")
            drops_drawn = True
    if log_scale:
        ax.set_yscale("log")
    return _finish_steps_plot(fig, ax, "total loss", title, out_path)


def plot_loss_components(run_or_log, out_dir: str = "figures", prefix: str = "Loss_",
                         smoothing: float = 0.0) -> list:
    """One figure per loss column of the log, named like the reference ``Loss_<name>.svg`` (+ ``.png``).

    Args:
        run_or_log: run folder, CSV or DataFrame.
        out_dir: output folder.
        smoothing: TensorBoard-style exponential smoothing weight in ``[0, 1)``
            (the raw curve is drawn faintly behind).

    The total-loss figure shows the total with and without the weight-decay
    term (``regularization_loss``), labelled.

    Returns:
        The written paths (SVG then PNG for each of :func:`loss_columns`: an
        SSD run's classification, localization, regularization, total).
    """
    plt = _pyplot()
    log = load_train_log(run_or_log)
    paths = []
    for name in loss_columns(log.columns):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        values = log[name].to_numpy(float)
        if smoothing:
            ax.plot(log["step"], values, color="C0", alpha=0.3)
            values = pd.Series(values).ewm(alpha=1 - smoothing).mean().to_numpy()
        ax.plot(log["step"], values, color="C0",
                label="with weight decay" if name == "total_loss" else None)
        without = detection_loss(log) if name == "total_loss" else None
        if without is not None:
            if smoothing:
                without = pd.Series(without).ewm(alpha=1 - smoothing).mean().to_numpy()
            ax.plot(log["step"], without, color="C1", label="without weight decay")
            ax.legend()
        ax.set_title(f"Loss/{name}")
        ax.set_xlabel("steps")
        ax.grid(True, alpha=0.3)
        paths += _save(fig, os.path.join(out_dir, f"{prefix}{name}"))
    return paths


# ----------------------------------------------------------------------------- mAP

def _step_label(step: int, step_format: str) -> str:
    """``20000`` -> ``"20k"`` with the default format; steps below 1000 stay plain (``"4"``)."""
    if step < 1000 and "{k}" in step_format and "{step}" not in step_format:
        return str(int(step))
    k = step / 1000
    k = int(k) if float(k).is_integer() else round(k, 1)
    return step_format.format(k=k, step=int(step))


def ap_table(map_csv_or_df, class_names: Optional[Sequence[str]] = None,
             step_format: str = "{k}k", decimals: Optional[int] = 4) -> pd.DataFrame:
    """Per-class AP x steps: rows are classes then ``mAP``, columns are steps (``20k``, ...).

    Args:
        map_csv_or_df: run folder, ``intermediate_map.csv`` or its DataFrame
            (``step, map, <class>...``).
        class_names: rows to show, in order (default: the CSV's class columns).
        step_format: column label; ``{k}`` is thousands of steps, ``{step}`` the step.
        decimals: rounding (``None``: none).
    """
    df = load_map_history(map_csv_or_df).sort_values("step")
    names = list(class_names) if class_names else [c for c in df.columns
                                                   if c not in ("step", "map")]
    table = df.set_index("step")[names + ["map"]].T
    table.index = names + ["mAP"]
    table.columns = [_step_label(s, step_format) for s in table.columns]
    table.columns.name = "Steps"
    return table.round(decimals) if decimals is not None else table


def ap_table_markdown(map_csv_or_df, class_names=None, step_format: str = "{k}k",
                      decimals: int = 4) -> str:
    """:func:`ap_table` in the reference markdown layout (``| class | AP | ... |``, bold mAP row)."""
    table = ap_table(map_csv_or_df, class_names, step_format, decimals=None)
    steps = list(table.columns)
    lines = ["|             | Steps | " + " | ".join(steps) + " |",
             "|-------------|-------|" + "|".join("----------" for _ in steps) + "|"]

    def fmt(v):
        return "nan" if pd.isna(v) else f"{v:.{decimals}g}" if decimals else str(v)
    for name, row in table.iterrows():
        if name == "mAP":
            values = " | ".join(f"**{fmt(v)}**" for v in row)
            lines.append(f"|             |**mAP**| {values} |")
        else:
            lines.append(f"|{name:<13}|  AP   | " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def plot_map_history(runs, out_path: Optional[str] = "figures/map_history", names=None,
                     title: str = "mAP"):
    """mAP against steps for one or more runs; returns ``(figure, paths)``."""
    plt = _pyplot()
    if isinstance(runs, (str, os.PathLike, pd.DataFrame)):
        runs = [runs]
    names = list(names) if names else [_run_name(r) for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, name in zip(runs, names):
        df = load_map_history(run).sort_values("step")
        ax.plot(df["step"], df["map"], marker="o", label=name)
    return _finish_steps_plot(fig, ax, "mAP", title, out_path)


# ----------------------------------------------------------------------------- experiment tables

def format_duration(seconds) -> str:
    """``8981`` -> ``"2h 29m 41s"``."""
    if seconds is None or (isinstance(seconds, float) and np.isnan(seconds)):
        return ""
    seconds = int(round(float(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m}m {s}s"


def _read_json(path):
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    return {}


def run_summary(run_dir: str) -> dict:
    """What the experiment tables need from one run folder (missing files give NaN/empty)."""
    metrics = _read_json(os.path.join(run_dir, "metrics.json"))
    train_config = _read_json(os.path.join(run_dir, "train_config.json"))
    config = _read_json(os.path.join(run_dir, "config.json"))
    run_info = _read_json(os.path.join(run_dir, "run_info.json"))   # experiment jobs write it
    log_path = os.path.join(run_dir, "logs", "train_log.csv")
    last = {}
    if os.path.exists(log_path):
        log = pd.read_csv(log_path)
        if len(log):
            last = log.iloc[-1].to_dict()
    return {
        "name": os.path.basename(os.path.normpath(run_dir)),
        "batch_size": train_config.get("batch_size"),
        "total_classes": config.get("num_classes"),
        "steps": int(last["step"]) if "step" in last else metrics.get("step"),
        "elapsed_seconds": last.get("elapsed_seconds"),
        "train_cpu_seconds": run_info.get("train_cpu_seconds"),
        "detector": config.get("name"),
        "metrics": metrics,
        "losses": {k: last[k] for k in loss_columns(list(last))},
    }


def experiment_tables(run_dirs: Sequence[str], names: Optional[Sequence[str]] = None) -> dict:
    """The research log's tables for several run folders.

    Returns:
        ``{"runs", "average_precision", "average_recall", "loss"}`` DataFrames,
        each with a ``No`` column (1, 2, ...).  ``runs``: ``No, name, detector,
        batch size, steps, training time`` ("2h 29m 41s", wall, from the loss
        log) and ``training CPU time`` (process CPU seconds of all threads,
        from ``run_info.json`` where an experiment job wrote one: the measure
        that does not depend on what else the machine was running); the AP / AR tables use the
        ``metrics.json`` COCO keys (``AP``...``ARl``; -1 where COCO has no
        objects of a size) with the reference column names; ``loss``: the
        last logged interval's losses under each run's own names
        (:func:`loss_table_columns`; empty where a run's family has no such
        loss).  All with ``steps`` and ``total_classes``.
    """
    summaries = [run_summary(os.fspath(d)) for d in run_dirs]
    if names:
        for s, name in zip(summaries, names):
            s["name"] = name
    runs, ap, ar, loss = [], [], [], []
    for no, s in enumerate(summaries, start=1):
        tail = {"steps": s["steps"], "total_classes": s["total_classes"]}
        runs.append({"No": no, "name": s["name"], "detector": s["detector"],
                     "batch size": s["batch_size"], "steps": s["steps"],
                     "training time": format_duration(s["elapsed_seconds"]),
                     "training CPU time": format_duration(s["train_cpu_seconds"])})
        ap.append({"No": no, **{label: s["metrics"].get(k, np.nan) for k, label in AP_COLUMNS},
                   **tail})
        ar.append({"No": no, **{label: s["metrics"].get(k, np.nan) for k, label in AR_COLUMNS},
                   **tail})
        loss.append({"No": no, **s["losses"], **tail})
    loss_cols = loss_table_columns([list(s["losses"]) for s in summaries])
    return {"runs": pd.DataFrame(runs), "average_precision": pd.DataFrame(ap),
            "average_recall": pd.DataFrame(ar),
            "loss": pd.DataFrame(loss, columns=["No", *loss_cols, "steps", "total_classes"])}


def _markdown(df: pd.DataFrame, decimals: int = 3) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            return "-1" if v == -1 else f"{v:.{decimals}f}"
        return str(v)
    lines = ["| " + " | ".join(df.columns) + " |",
             "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


TABLE_TITLES = {"average_precision": "Average Precision", "average_recall": "Average Recall",
                "loss": "loss"}


def tables_markdown(tables: Mapping[str, pd.DataFrame], decimals: int = 3) -> str:
    """The tables of :func:`experiment_tables` as the research log's markdown.

    The runs table becomes the list ``- 1 = name | BATCH_SIZE = 12 | training
    time = 2h 29m 41s`` (``| CPU time = ...`` where known); the others ``**Average Precision**`` etc. tables.
    """
    parts = []
    if "runs" in tables:
        items = []
        for row in tables["runs"].to_dict("records"):
            item = f"- {row['No']} = {row['name']}"
            batch = row.get("batch size")
            if batch is not None and not (isinstance(batch, float) and np.isnan(batch)):
                item += f" | BATCH_SIZE = {int(batch)}"
            if row.get("training time"):
                item += f" | training time = {row['training time']}"
            if row.get("training CPU time"):
                item += f" | CPU time = {row['training CPU time']}"
            items.append(item)
        parts.append("\n".join(items))
    for key, title in TABLE_TITLES.items():
        if key in tables:
            parts.append(f"**{title}**\n\n" + _markdown(tables[key], decimals))
    return "\n\n\n".join(parts) + "\n"


def write_report(run_dir: str, out_dir: str = "figures", class_names=None) -> dict:
    """All figures and tables of one run folder into ``out_dir``; returns ``{what: path(s)}``."""
    out = {"loss_components": plot_loss_components(run_dir, out_dir)}
    out["loss_history"] = plot_loss_history(run_dir, os.path.join(out_dir, "loss_history"))[1]
    map_csv = os.path.join(run_dir, "metrics", "intermediate_map.csv")
    if os.path.exists(map_csv) and len(pd.read_csv(map_csv)):
        out["map_history"] = plot_map_history(run_dir, os.path.join(out_dir, "map_history"))[1]
        path = os.path.join(out_dir, "ap_table.md")
        with open(path, "w") as handle:
            handle.write(ap_table_markdown(map_csv, class_names) + "\n")
        out["ap_table"] = path
    return out

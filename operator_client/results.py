"""`results`: every metrics file of some runs gathered into one table, CSV, Markdown and plots.

Reads what the job writes on the shared volume (or a local run directory):
- evaluation metrics: `RUN/eval/*metrics.json` and, from eval-batch, the
  `<checkpoint>.<split>.metrics.json` files next to checkpoints;
- training summaries: `RUN/<stage>/metrics.json` (per-epoch loss history) for the loss curves.
Pure Python; matplotlib only for `--plot`.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ClientError

COLUMNS = ("run", "stage", "loss", "epoch", "split", "recall@1", "recall@10", "recall@100",
           "recall@1000", "map@r", "checkpoint")
METRIC_COLUMNS = ("recall@1", "recall@10", "recall@100", "recall@1000", "map@r")
TRAIN_STAGES = ("pretrain", "finetune")


@dataclass
class Results:
    rows: list[dict[str, Any]] = field(default_factory=list)
    # (run, stage) -> [(epoch, mean loss)]
    losses: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _run_name(run_dir: Path) -> str:
    return run_dir.name or str(run_dir)


def _eval_files(run_dir: Path) -> list[Path]:
    files = set(run_dir.glob("eval/*metrics.json"))
    for stage in TRAIN_STAGES:
        files.update(run_dir.glob(f"{stage}/checkpoints/*.metrics.json"))
    return sorted(files)


def gather(paths: list[Path]) -> Results:
    """Collect rows from run directories (or single metrics files)."""
    res = Results()
    seen: set[tuple] = set()
    for given in paths:
        if not given.exists():
            raise ClientError(f"{given}: no such run directory or metrics file")
        run_dir = given if given.is_dir() else given.parent
        eval_files = _eval_files(given) if given.is_dir() else [given]
        for f in eval_files:
            m = _read(f)
            if not m or "recall@1" not in m:
                continue
            row = {
                "run": _run_name(run_dir), "stage": m.get("stage") or "", "loss": m.get("loss") or "",
                "epoch": m.get("epoch"), "split": m.get("split") or "",
                **{c: m.get(c) for c in METRIC_COLUMNS}, "checkpoint": m.get("checkpoint") or str(f),
            }
            key = (row["run"], row["checkpoint"], row["split"])
            if key in seen:      # eval/metrics.json and eval-batch may hold the same result
                continue
            seen.add(key)
            res.rows.append(row)
        if given.is_dir():
            for stage in TRAIN_STAGES:
                summary = _read(given / stage / "metrics.json")
                if summary and summary.get("history"):
                    res.losses[(_run_name(given), stage)] = [
                        (int(h["epoch"]), float(h["loss"])) for h in summary["history"]]
    if not res.rows and not res.losses:
        raise ClientError("no metrics found under " + ", ".join(map(str, paths)) +
                          "; run `eval` or `eval-batch` first")
    res.rows.sort(key=lambda r: (r["run"], TRAIN_STAGES.index(r["stage"]) if r["stage"] in TRAIN_STAGES else 9,
                                 r["epoch"] or 0, r["split"]))
    return res


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def table(rows: list[dict[str, Any]], columns=COLUMNS[:-1]) -> str:
    """An aligned text table (numbers right-aligned)."""
    cells = [[c for c in columns]] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = []
        for i, (cell, w) in enumerate(zip(row, widths)):
            numeric = columns[i] in (*METRIC_COLUMNS, "epoch")
            parts.append(cell.rjust(w) if numeric else cell.ljust(w))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: r.get(c) if r.get(c) is not None else "" for c in COLUMNS})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], columns=COLUMNS[:-1]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if c in (*METRIC_COLUMNS, "epoch") else "---" for c in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body]) + "\n"


def best(rows: list[dict[str, Any]], metric: str = "map@r") -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r.get(metric), (int, float))]
    return max(scored, key=lambda r: r[metric]) if scored else None


PLOT_SIZE = (8.0, 5.0)   # inches; PNGs are PLOT_SIZE * PLOT_DPI pixels
PLOT_DPI = 100


def plot(res: Results, out_dir: Path) -> list[Path]:
    """recall_vs_epoch.png (Recall@1/10/100 and MAP@R against epoch, one line per run and
    stage) and loss_curves.png (training loss per epoch). Returns the files written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ClientError("--plot needs matplotlib: pip install matplotlib") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    series: dict[tuple[str, str, str], list[dict]] = {}
    for r in res.rows:
        if r.get("epoch") is not None:
            series.setdefault((r["run"], r["stage"], r["split"]), []).append(r)
    if series:
        fig, axes = plt.subplots(2, 2, figsize=PLOT_SIZE, dpi=PLOT_DPI, sharex=True)
        for ax, metric in zip(axes.flat, ("recall@1", "recall@10", "recall@100", "map@r")):
            for (run, stage, split), rows in sorted(series.items()):
                rows = sorted(rows, key=lambda r: r["epoch"])
                ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], marker="o",
                        label=f"{run} {stage} ({split})")
            ax.set_title(metric)
            ax.grid(alpha=0.3)
        for ax in axes[1]:
            ax.set_xlabel("epoch")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "recall_vs_epoch.png"
        fig.savefig(path, dpi=PLOT_DPI)
        plt.close(fig)
        written.append(path)
    if res.losses:
        fig, ax = plt.subplots(figsize=PLOT_SIZE, dpi=PLOT_DPI)
        for (run, stage), points in sorted(res.losses.items()):
            ax.plot([e for e, _ in points], [v for _, v in points], marker=".", label=f"{run} {stage}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean training loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "loss_curves.png"
        fig.savefig(path, dpi=PLOT_DPI)
        plt.close(fig)
        written.append(path)
    return written

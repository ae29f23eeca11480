"""Evaluation reports: nested metrics, DVC plot data, PNG figures and a Markdown table."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.metrics import at_chance, classification_metrics, va_metrics  # noqa: E402
from pipeline.protocol import Units  # noqa: E402

log = logging.getLogger(__name__)


def _expr_metrics(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    m = classification_metrics(y, pred, len(classes))
    return {
        "cpm": round(float(m["cpm"]), 6),
        "accuracy": round(float(m["accuracy"]), 6),
        "macro_f1": round(float(m["macro_f1"]), 6),
        "macro_f1_all": round(float(m["macro_f1_all"]), 6),
        "weighted_f1": round(float(m["weighted_f1"]), 6),
        "uar": round(float(m["uar"]), 6),
        "n_scored": int(m["n_scored"]),
        "per_class_f1": {c: round(float(f), 6) for c, f in zip(classes, m["per_class_f1"])},
        "confusion": np.asarray(m["confusion"]).tolist(),
    }


def _va_metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    return {k: round(float(v), 6) for k, v in va_metrics(y, pred).items()} | {
        "n_scored": int(np.isfinite(y).all(axis=1).sum())
    }


def evaluate_split(
    P: np.ndarray, y: np.ndarray, units: Units, names: list[str], classes: list[str]
) -> dict[str, dict]:
    """Metrics of each model: official units (headline) and the 5 Hz grid (``grid_5hz``).

    Parameters
    ----------
    P : (L, N, K) 5 Hz scores; y : (N,) 5 Hz labels (-1 masked)
    units : the split's official units (:func:`pipeline.protocol.split_units`)

    CPM = 0.67 macro F1 + 0.33 accuracy with the macro F1 of ABAW 2020 (over the classes
    that occur); ``macro_f1_all`` averages over all classes, as later ABAW editions do.
    """
    out = {}
    for i, name in enumerate(names):
        grid = _expr_metrics(y, P[i].argmax(axis=1), classes)
        out[name] = _expr_metrics(units.y, units.pred[i], classes) | {
            "grid_5hz": {k: grid[k] for k in ("cpm", "accuracy", "macro_f1", "uar", "n_scored")}
        }
    return out


def evaluate_split_va(
    P: np.ndarray, y: np.ndarray, units: Units, names: list[str]
) -> dict[str, dict]:
    """CCC of valence, arousal and their mean for each model: official units (headline) and
    the 5 Hz grid (``grid_5hz``); ``P`` [L, N, 2], ``y`` [N, 2], NaN masked."""
    return {
        name: _va_metrics(units.y, units.pred[i]) | {"grid_5hz": _va_metrics(y, P[i])}
        for i, name in enumerate(names)
    }


def markdown_table_va(metrics: dict[str, dict[str, dict]]) -> str:
    """A table of CCC per model (rows sorted by dev mean CCC)."""
    splits = [s for s in ("dev", "test") if s in metrics]
    names = sorted(metrics["dev"], key=lambda n: -metrics["dev"][n]["ccc_mean"])
    rows = [
        "| model | "
        + " | ".join(f"{s} CCC valence | {s} CCC arousal | {s} CCC mean" for s in splits)
        + " |",
        "|---|" + "---|" * (3 * len(splits)),
    ]
    for n in names:
        cells = []
        for s in splits:
            m = metrics[s].get(n)
            cells += (
                [f"{m['ccc_valence']:.3f}", f"{m['ccc_arousal']:.3f}", f"{m['ccc_mean']:.3f}"]
                if m
                else ["-"] * 3
            )
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_timeline_va(
    path: Path, t: np.ndarray, y: np.ndarray, preds: dict[str, np.ndarray], title: str
) -> None:
    """Valence and arousal labels and predictions of a few models over one video."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
    for d, (ax, name) in enumerate(zip(axes, ("valence", "arousal"))):
        ax.plot(t, y[:, d], color="black", lw=2.5, label="label")
        for model, p in preds.items():
            ax.plot(t, p[:, d], lw=1, label=model)
        ax.set_ylabel(name)
        ax.set_ylim(-1, 1)
    axes[0].set_title(title)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_records(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> list[dict[str, str]]:
    """Rows ``{actual, predicted}`` (class names) for DVC's confusion plot templates."""
    ok = y >= 0
    return [{"actual": classes[a], "predicted": classes[b]} for a, b in zip(y[ok], pred[ok])]


def markdown_table(metrics: dict[str, dict[str, dict]]) -> str:
    """A table of CPM, accuracy, F1 and UAR per model (rows sorted by dev CPM)."""
    splits = [s for s in ("dev", "test") if s in metrics]
    names = sorted(metrics["dev"], key=lambda n: -metrics["dev"][n]["cpm"])
    head = (
        "| model | "
        + " | ".join(f"{s} CPM | {s} acc | {s} macro F1 | {s} UAR" for s in splits)
        + " |"
    )
    sep = "|---|" + "---|" * (4 * len(splits))
    rows = [head, sep]
    for n in names:
        cells = []
        for s in splits:
            m = metrics[s].get(n)
            cells += (
                [
                    f"{m['cpm']:.3f}",
                    f"{m['accuracy']:.3f}",
                    f"{m['macro_f1']:.3f}",
                    f"{m['uar']:.3f}",
                ]
                if m
                else ["-"] * 4
            )
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_confusion(path: Path, confusion: np.ndarray, classes: list[str], title: str) -> None:
    """Row-normalised confusion matrix as a PNG."""
    cm = np.asarray(confusion, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class_f1(
    path: Path, metrics: dict[str, dict], classes: list[str], title: str
) -> None:
    """Grouped bars: per-class F1 of every model (one group per class)."""
    names = sorted(metrics, key=lambda n: -metrics[n]["cpm"])
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(classes)), 4))
    for i, n in enumerate(names):
        ax.bar(
            np.arange(len(classes)) + i * width,
            [metrics[n]["per_class_f1"][c] for c in classes],
            width,
            label=n,
        )
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax.set_ylabel("F1")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=6, ncol=2 if len(names) > 8 else 1, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_timeline(
    path: Path,
    t: np.ndarray,
    y: np.ndarray,
    probs: dict[str, np.ndarray],
    classes: list[str],
    title: str,
) -> None:
    """Labels and the predicted class of a few models over one video's 5 Hz grid."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.step(t, np.where(y >= 0, y, np.nan), where="mid", color="black", lw=2.5, label="label")
    for k, (name, p) in enumerate(probs.items()):
        ax.plot(t, p.argmax(axis=1) + 0.08 * (k + 1), ".", ms=3, label=name)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Evaluation:
    """Metrics of every model on every split, and what the figures need."""

    metrics: dict[str, dict[str, dict]]  # split -> model -> metrics (confusion included for expr)
    stacked: dict[str, tuple]  # split -> (P [L, N, K], y, index) from stack_split
    names: list[str]
    key: str  # ranking measure: "cpm" or "ccc_mean"
    best: str  # best model on dev by ``key``
    table: str  # Markdown table
    measure: str  # what the headline numbers count


UNIT_WORDS = {
    "frames": "per frame at each video's own frame rate (5 Hz scores mapped back)",
    "clips": "per clip (one prediction per clip: the mean of its 5 Hz scores)",
    "frames+clips": "per frame for videos with per-frame labels, per clip for clips",
}


def evaluate_all(
    stacked: dict[str, tuple],
    units: dict[str, Units],
    names: list[str],
    task: str,
    classes: list[str],
) -> Evaluation:
    """Score every model on every split.

    ``stacked`` comes from :func:`pipeline.scores.stack_split`, ``units`` from
    :func:`pipeline.protocol.split_units` for the same splits.
    """
    kind = UNIT_WORDS[units["dev"].kind]
    if task == "va":
        out = {s: evaluate_split_va(P, y, units[s], names) for s, (P, y, _) in stacked.items()}
        key, table = "ccc_mean", markdown_table_va(out)
        measure = f"CCC (concordance correlation) of valence and arousal, {kind}"
    else:
        out = {
            s: evaluate_split(P, y, units[s], names, classes) for s, (P, y, _) in stacked.items()
        }
        key, table = "cpm", markdown_table(out)
        measure = f"CPM = 0.67 macro F1 + 0.33 accuracy, {kind}"
    best = max(names, key=lambda n: out["dev"][n][key])
    if task != "va":  # models no better than chance on dev: warned here, left out by fuse
        for i, name in enumerate(names):
            reason = at_chance(units["dev"].y, units["dev"].pred[i], len(classes))
            if reason:
                log.warning("%s is at chance on dev: %s", name, reason)
                table += f"\n- `{name}` is at chance on dev: {reason}\n"
    return Evaluation(out, stacked, names, key, best, table, measure)


def summary_markdown(ev: Evaluation, skipped: dict[str, str] | None = None) -> str:
    """The report's Markdown summary: measure, best model, table, and the models that were
    not fitted (``skipped``: ``{model: why}``, the skip records of
    :func:`pipeline.scores.write_skipped`)."""
    notes = "".join(f"- `{name}`: {why}\n" for name, why in sorted((skipped or {}).items()))
    if notes:
        notes = "\n## Not fitted (nothing to learn from in this data)\n\n" + notes
    return (
        f"# Results ({', '.join(ev.metrics)})\n\n{ev.measure}; unannotated frames masked. "
        "The same figures on the 5 Hz grid are in metrics.json under `grid_5hz`. Every dev "
        "figure is out of sample: single models are fitted on train, and the dev scores of "
        "the fusions (`fusion_swf`, `fusion_mcwf`, and `fusion_chosen`, the rule `fuse` "
        "picks) are cross-validated over dev groups, joined by the train groups' out-of-fold "
        "scores when `fit.oof_folds` is on (models/fuse/choice.json: `pool`). "
        f"Best on dev: **{ev.best}**.\n\n" + ev.table + notes
    )


def write_plot_data(folder: Path, ev: Evaluation, classes: list[str]) -> None:
    """``confusion_<split>.json`` rows of the best model (expr only) for ``dvc plots``, one row
    per 5 Hz bin (per-frame rows would make the file as large as the dataset)."""
    if ev.key != "cpm":
        return
    for split, (P, y, _) in ev.stacked.items():
        rows = confusion_records(y, P[ev.names.index(ev.best)].argmax(axis=1), classes)
        (folder / f"confusion_{split}.json").write_text(json.dumps(rows))


def write_figures(
    folder: Path, ev: Evaluation, classes: list[str], rate_hz: float, timeline_videos: int
) -> None:
    """Confusion matrices and per-class F1 (expr), and score timelines of the top 3 models."""
    from pipeline.labels.resample import grid_times

    if ev.key == "cpm":
        for split, m in ev.metrics.items():
            plot_confusion(
                folder / f"confusion_{split}_{ev.best}.png",
                m[ev.best]["confusion"],
                classes,
                f"{ev.best} ({split})",
            )
            plot_per_class_f1(
                folder / f"per_class_f1_{split}.png", m, classes, f"per-class F1 ({split})"
            )
    split = list(ev.stacked)[-1]
    P, y, index = ev.stacked[split]
    top = sorted(ev.names, key=lambda n: -ev.metrics["dev"][n][ev.key])[:3]
    start = 0
    for vid, n in index[:timeline_videos]:
        t, sl = grid_times(n, rate_hz), slice(start, start + n)
        preds = {m: P[ev.names.index(m)][sl] for m in top}
        if ev.key == "cpm":
            plot_timeline(
                folder / f"timeline_{vid}.png", t, y[sl], preds, classes, f"{vid} ({split})"
            )
        else:
            plot_timeline_va(folder / f"timeline_{vid}.png", t, y[sl], preds, f"{vid} ({split})")
        start += n

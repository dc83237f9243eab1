"""Evaluation reports: markdown tables, Prefect table rows, and figures (matplotlib, Agg).

Built from an :class:`stliif.evaluation.Evaluation`; figures need the crops a
:class:`CropCollector` keeps while the evaluation runs (passed as its ``on_prediction``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stliif.errors import DataAccessError
from stliif.evaluation.results import DEFINITIONS, EvalResult, Evaluation, PredictionEvent

__all__ = ["CropCollector", "markdown_report", "table_rows", "write_report"]

_LABELS = {
    "mse": "MSE",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "mse_refl": "MSE ρ",
    "psnr_refl": "PSNR ρ",
    "ssim_refl": "SSIM ρ",
    "cpsnr_refl": "cPSNR ρ",
    "cons_mae": "LR MAE",
    "cons_sam": "LR SAM°",
    "cons_shift": "LR shift px",
    "synthesis": "synthesis",
    "improvement": "improv.",
    "omission": "omission",
    "hallucination": "halluc.",
    "psnr_refl_r": "PSNR ρ R",
    "psnr_refl_g": "PSNR ρ G",
    "psnr_refl_b": "PSNR ρ B",
    "psnr_refl_nir": "PSNR ρ NIR",
    "ndvi_mae": "NDVI LR MAE",
    "ndvi_mae_hr": "NDVI HR MAE",
}
_PROTOCOL_TITLE = {"paper": "P (the study's protocol)", "clean": "C (clean, from our ETL artifacts)"}


def _fmt(v: float | None, metric: str) -> str:
    if v is None or not math.isfinite(float(v)):
        return "–"
    if metric.startswith("ssim") or metric in ("cons_mae", "synthesis", "ndvi_mae", "ndvi_mae_hr"):
        return f"{v:.4f}"
    if metric.startswith("mse"):
        return f"{v:.3g}" if metric.endswith("_refl") else f"{v:.2f}"
    return f"{v:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


_CONSISTENCY_GROUP = ("consistency with the LR inputs and hallucination (opensr-test)",
                      ("cons_mae", "cons_sam", "cons_shift", "synthesis", "improvement", "omission", "hallucination"))  # fmt: skip


def _groups(ev: Evaluation) -> list[tuple[str, tuple[str, ...]]]:
    """The report's metric groups, each with the metrics the evaluation holds (an evaluation saved
    before four bands has no band group)."""
    if ev.protocol == "paper":
        groups = [("uint8 RGB", ("psnr", "ssim")), _CONSISTENCY_GROUP]
    else:
        groups = [("uint8 RGB", ("psnr", "ssim")), ("reflectance", ("psnr_refl", "ssim_refl", "cpsnr_refl")), _CONSISTENCY_GROUP,
                  ("four bands: reflectance PSNR per band, NDVI against the inputs (block mean) and the target",
                   ("psnr_refl_r", "psnr_refl_g", "psnr_refl_b", "psnr_refl_nir", "ndvi_mae", "ndvi_mae_hr"))]  # fmt: skip
    have = set(ev.result.metrics)
    return [(t, tuple(m for m in ms if m in have)) for t, ms in groups if any(m in have for m in ms)]


def means_table(ev: Evaluation, metrics: Sequence[str]) -> list[str]:
    """Markdown rows: method x (scale, metric) means over AOIs."""
    header = ["method", *(f"{s} {_LABELS[m]}" for s in ev.scales for m in metrics)]
    rows = []
    for name, res in ev.methods().items():
        means = res.means
        label = f"**{name}**" if name == ev.model else name
        rows.append([label, *(_fmt(means[s][m], m) for s in ev.scales for m in metrics)])
    return _table(header, rows)


def per_aoi_table(ev: Evaluation, scale: str, metrics: Sequence[str]) -> list[str]:
    """Markdown rows: AOI x method, cells ``metric1 / metric2 ...`` at ``scale``, plus means."""
    methods = ev.methods()
    header = ["AOI", *methods]
    values = {n: {m: r.values(m, scale) for m in metrics} for n, r in methods.items()}
    rows = [
        [aoi, *(" / ".join(_fmt(values[n][m][aoi], m) for m in metrics) for n in methods)]
        for aoi in ev.aois
    ]
    rows.append(
        ["**mean**", *(" / ".join(_fmt(r.means[scale][m], m) for m in metrics) for r in methods.values())]
    )
    return _table(header, rows)


def deltas_table(ev: Evaluation) -> list[str]:
    """Markdown rows: baseline x metric, cells ``mean [CI low, CI high]`` per scale."""
    rows = []
    for base, per_scale in ev.deltas.items():
        metrics = list(dict.fromkeys(m for d in per_scale.values() for m in d))
        for m in metrics:
            cells = []
            for s in ev.scales:
                d = per_scale.get(s, {}).get(m)
                cells.append("–" if d is None else f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]")
            rows.append([f"{ev.model} − {base}", _LABELS[m], *cells])
    if not rows:
        return ["(no baseline other than the model itself, or no finite metric to compare)"]
    return _table(["comparison", "metric", *ev.scales], rows)


def markdown_report(
    ev: Evaluation,
    *,
    figures: Mapping[str, str] | None = None,
    command: str | None = None,
) -> str:
    """The evaluation as a markdown document.

    Args:
        ev: The evaluation.
        figures: ``{caption: relative path}`` of figure files to link.
        command: The command line that produced it (printed verbatim).
    """
    n = len(ev.aois)
    lines = [
        f"# Evaluation of `{ev.model}` on protocol {_PROTOCOL_TITLE.get(ev.protocol, ev.protocol)}",
        "",
    ]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"{n} AOIs: {', '.join(ev.aois)}.",
        f"Colour map fitted on {len(ev.train_aois)} training AOIs. Wall time {ev.seconds:.1f} s.",
        "",
    ]
    for note in ev.notes:
        lines.append(f"> Note: {note}")
    if ev.notes:
        lines.append("")
    lines += ["## Means over AOIs", ""]
    for title, metrics in _groups(ev):
        lines += [f"{title}:", "", *means_table(ev, metrics), ""]
    lines += ["## Paired per-AOI deltas (model − baseline, 95 % bootstrap CI)", ""]
    lines += [*deltas_table(ev), ""]
    lines += ["## Per AOI", ""]
    for title, metrics in _groups(ev):
        for s in ev.scales:
            label = " / ".join(_LABELS[m] for m in metrics)
            lines += [f"### {s}, {title}: {label}", "", *per_aoi_table(ev, s, metrics), ""]
    if figures:
        lines += ["## Figures", ""]
        for caption, path in figures.items():
            lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    lines += ["## Definitions", "", DEFINITIONS[ev.protocol], "", DEFINITIONS["deltas"], ""]
    if ev.inputs:
        shown = sorted(ev.inputs.items())
        lines += [f"Inputs: {len(shown)} versioned artifacts / fingerprints"]
        lines += [f"- `{k}`: `{v}`" for k, v in shown if "/" not in k or k.startswith("splits/")]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def table_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """Per-AOI, per-scale metrics of the model as flat rows (Prefect table artifact)."""
    rows = []
    for r in ev.result.records:
        row: dict[str, Any] = {"aoi": r["aoi"], "scale": r["scale"]}
        for m in ev.result.metrics:
            v = float(r[m])
            row[m] = round(v, 6) if math.isfinite(v) else None
        rows.append(row)
    return rows


class CropCollector:
    """Keeps centre crops of the inputs, bicubic, model and target for the report's figures.

    Pass it as ``on_prediction``; only events at ``scale`` are kept (as uint8 display images).

    Args:
        model: Name of the evaluated model.
        scale: Scale whose predictions are shown (e.g. ``"x6"``).
        crop: Side of the centre crop in output pixels.
    """

    def __init__(self, model: str, scale: str, *, crop: int = 256) -> None:
        self.model, self.scale, self.crop = model, scale, int(crop)
        self.panels: dict[str, dict[str, np.ndarray]] = {}

    def _cut(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        c = min(self.crop, h, w)
        y0, x0 = (h - c) // 2, (w - c) // 2
        return np.ascontiguousarray(img[y0 : y0 + c, x0 : x0 + c])

    def __call__(self, event: PredictionEvent) -> None:
        if event.scale != self.scale or event.model not in (self.model, "bicubic"):
            return
        panels = self.panels.setdefault(event.aoi, {})
        pred = np.asarray(event.prediction)
        mid = pred.shape[0] // 2 if pred.ndim == 4 else None
        image = pred[mid] if mid is not None else pred
        panels[event.model] = self._cut(event.display(image))
        if "target" not in panels:
            size = event.target.shape[:2]
            frames = np.asarray(event.frames)
            frame = event.display(frames[frames.shape[0] // 2])
            up = np.asarray(Image.fromarray(frame).resize(size[::-1], Image.Resampling.NEAREST))
            panels["input"] = self._cut(up)
            panels["target"] = self._cut(event.display(event.target))


def _bar_chart(ev: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ev.methods()
    scales = ev.scales
    aois = ev.aois
    fig, axes = plt.subplots(len(scales), 1, figsize=(max(8, 1.1 * len(aois) + 3), 3.0 * len(scales)), squeeze=False)
    width = 0.8 / len(methods)
    x = np.arange(len(aois))
    for ax, s in zip(axes[:, 0], scales, strict=True):
        for k, (name, res) in enumerate(methods.items()):
            vals = res.values("psnr", s)
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, [vals[a] for a in aois], width,
                   label=name, edgecolor="black" if name == ev.model else None)  # fmt: skip
        ax.set_xticks(x, [a.replace("Landcover-", "LC-") for a in aois], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"PSNR {s} (dB)")
        lo = min(min(r.values("psnr", s).values()) for r in methods.values())
        hi = max(max(r.values("psnr", s).values()) for r in methods.values())
        ax.set_ylim(math.floor(lo - 1), math.ceil(hi + 0.5))
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=len(methods), fontsize=8, loc="upper left")
    axes[0, 0].set_title(f"uint8 PSNR per AOI, protocol {ev.protocol}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _crop_figure(aoi: str, panels: Mapping[str, np.ndarray], model: str, scale: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [("input", "input (middle frame, nearest)"), ("bicubic", "bicubic (middle frame)"),
             (model, f"{model}"), ("target", "HR target")]  # fmt: skip
    if model == "bicubic":
        order = [o for i, o in enumerate(order) if i != 2]
    shown = [(k, t) for k, t in order if k in panels]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.5), squeeze=False)
    for ax, (k, title) in zip(axes[0], shown, strict=True):
        ax.imshow(panels[k], interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{aoi}, {scale}, centre crop", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    ev: Evaluation,
    out_dir: str | Path,
    *,
    crops: CropCollector | None = None,
    command: str | None = None,
) -> Path:
    """Write ``report.md``, ``psnr_per_aoi.png`` and ``crops_<AOI>.png`` into ``out_dir``.

    Returns:
        Path of ``report.md``.
    """
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        figures = {"uint8 PSNR per AOI and scale": "psnr_per_aoi.png"}
        _bar_chart(ev, out / "psnr_per_aoi.png")
        if crops is not None:
            for aoi in ev.aois:
                if aoi in crops.panels:
                    name = f"crops_{aoi}.png"
                    _crop_figure(aoi, crops.panels[aoi], ev.model, crops.scale, out / name)
                    figures[f"{aoi}: input, bicubic, {ev.model}, HR ({crops.scale})"] = name
        path = out / "report.md"
        path.write_text(markdown_report(ev, figures=figures, command=command))
    except OSError as err:
        raise DataAccessError(f"{out}: cannot write the report ({err})") from err
    return path


def result_summary(results: Mapping[str, EvalResult], metric: str = "psnr") -> dict[str, dict[str, float]]:
    """``{method: {scale: mean}}`` of one metric (for logs)."""
    return {n: {s: r.means[s][metric] for s in r.scales} for n, r in results.items()}

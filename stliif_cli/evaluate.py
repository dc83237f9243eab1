"""``stliif evaluate``: score a model and every baseline on protocol P or C."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from stliif.config import default_data_root
from stliif.errors import DataAccessError, InvalidInputError
from stliif_cli.options import EndpointOpt, StoreOpt, open_store

if TYPE_CHECKING:  # the evaluation modules load torch: imported when a command runs
    from stliif.evaluation import Evaluation, PredictionEvent

__all__ = ["ProtocolChoice", "evaluate"]

console = Console()


class ProtocolChoice(str, Enum):  # noqa: UP042  (typer shows the values; StrEnum would change str())
    """Evaluation protocols."""

    paper = "paper"
    clean = "clean"


_SHORT = {
    "mse": "MSE", "psnr": "PSNR", "ssim": "SSIM", "mse_refl": "MSEρ", "psnr_refl": "PSNRρ",
    "ssim_refl": "SSIMρ", "cpsnr_refl": "cPSNRρ", "cons_mae": "LR-MAE", "hallucination": "halluc",
    "psnr_refl_nir": "PSNRρ-NIR", "ndvi_mae": "NDVI-MAE",
}  # fmt: skip


def _fmt(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "–"
    if metric.startswith("ssim") or metric in ("cons_mae", "ndvi_mae"):
        return f"{v:.4f}"
    if metric == "mse_refl":
        return f"{v:.2e}"
    return f"{v:.2f}"


def _shown(ev: Evaluation) -> list[str]:
    if ev.protocol == "paper":
        return ["psnr", "ssim", "cons_mae", "hallucination"]
    shown = ["psnr", "ssim", "psnr_refl", "cpsnr_refl", "cons_mae", "hallucination", "psnr_refl_nir", "ndvi_mae"]
    return [m for m in shown if m in ev.result.metrics]  # a result saved before four bands lacks the last two


def _print(ev: Evaluation) -> None:
    metrics = _shown(ev)
    table = Table(title=f"{ev.model} on protocol {ev.protocol} (per AOI)")
    table.add_column("AOI")
    for s in ev.scales:
        for m in metrics:
            table.add_column(f"{s} {_SHORT[m]}", justify="right")
    values = {(s, m): ev.result.values(m, s) for s in ev.scales for m in metrics}
    for aoi in ev.aois:
        table.add_row(aoi, *(_fmt(values[s, m][aoi], m) for s in ev.scales for m in metrics))
    means = ev.result.means
    table.add_row("[bold]mean", *(f"[bold]{_fmt(means[s][m], m)}" for s in ev.scales for m in metrics))
    console.print(table)

    summary = Table(title="means over AOIs, every method")
    summary.add_column("method")
    for s in ev.scales:
        for m in metrics:
            summary.add_column(f"{s} {_SHORT[m]}", justify="right")
    for name, res in ev.methods().items():
        label = f"[bold]{name}" if name == ev.model else name
        summary.add_row(label, *(_fmt(res.means[s][m], m) for s in ev.scales for m in metrics))
    console.print(summary)

    deltas = Table(title=f"paired per-AOI deltas, {ev.model} − baseline (mean [95% bootstrap CI])")
    deltas.add_column("baseline")
    deltas.add_column("metric")
    for s in ev.scales:
        deltas.add_column(s, justify="right")
    for base, per_scale in ev.deltas.items():
        for m in dict.fromkeys(m for d in per_scale.values() for m in d):
            cells = []
            for s in ev.scales:
                d = per_scale.get(s, {}).get(m)
                cells.append("–" if d is None else f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]")
            deltas.add_row(base, _SHORT[m], *cells)
    console.print(deltas)
    for note in ev.notes:
        console.print(f"[yellow]note:[/] {note}")


def _command(
    protocol: str, model: str, data: Path | None, store: str | None, ref: str | None,
    aois: list[str] | None, scales: list[str] | None, save: Path | None, json_file: Path | None,
    report: Path | None, no_ssim: bool,
) -> str:  # fmt: skip
    parts = ["stliif", "evaluate", "--protocol", protocol, "--model", model]
    for flag, value in (("--data", data), ("--store", store), ("--ref", ref)):
        if value is not None:
            parts += [flag, str(value)]
    for a in aois or []:
        parts += ["--aoi", a]
    for s in scales or []:
        parts += ["--scale", s]
    for flag, value in (("--save-predictions", save), ("--json", json_file), ("--report", report)):
        if value is not None:
            parts += [flag, str(value)]
    if no_ssim:
        parts.append("--no-ssim")
    return shlex.join(parts)


def evaluate(
    protocol: Annotated[
        ProtocolChoice,
        typer.Option("--protocol", help="paper (the study's frames and targets) or clean (our ETL artifacts)."),
    ] = ProtocolChoice.paper,
    model: Annotated[
        str,
        typer.Option("--model", help="bicubic, median, median-colour, linear, or a checkpoint path."),
    ] = "bicubic",
    data: Annotated[
        Path | None,
        typer.Option("--data", help="WorldStrat root for protocol paper [default: $STLIIF_DATA or ../shared/...]"),
    ] = None,
    store: StoreOpt = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Store branch, tag or snapshot (clean).")] = None,
    aoi: Annotated[
        list[str] | None,
        typer.Option("--aoi", help="AOI to evaluate (repeatable); the split's test AOIs by default."),
    ] = None,
    scale: Annotated[
        list[str] | None, typer.Option("--scale", help="x2, x4 or x6 (repeatable); all by default.")
    ] = None,
    save_predictions: Annotated[
        Path | None,
        typer.Option("--save-predictions", help="Write the model's scored images here (paper: PNG, clean: GeoTIFF)."),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write every metric, mean and delta as JSON.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write report.md with figures (PNG) into this folder."),
    ] = None,
    no_ssim: Annotated[bool, typer.Option("--no-ssim", help="Skip SSIM (the slow part).")] = False,
    commit: Annotated[
        bool,
        typer.Option("--commit", help="Run the evaluate flow: commit metrics/<model>/<protocol> to the store."),
    ] = False,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Score a model and every baseline per AOI, with paired deltas (protocol P or C).

    Without ``--commit`` the store is only read; with it the evaluate flow runs and commits the
    metrics and report (a rerun with nothing changed commits nothing).
    """
    if commit:
        _evaluate_committed(protocol.value, model, data, store, ref, aoi, scale, save_predictions,
                            json_file, report, no_ssim, endpoint_url)  # fmt: skip
        return
    _evaluate(
        protocol.value, model, data, store, ref, aoi, scale, save_predictions, json_file,
        report, no_ssim, endpoint_url,
    )  # fmt: skip


def _scales(scales: list[str] | None) -> dict[str, int]:
    from stliif.evaluation import PAPER_SCALES

    unknown = sorted(set(scales or []) - set(PAPER_SCALES))
    if unknown:
        raise InvalidInputError(f"unknown scales {unknown}: use {', '.join(PAPER_SCALES)}")
    return {s: n for s, n in PAPER_SCALES.items() if not scales or s in scales}


def _write_json(ev: Evaluation, json_file: Path) -> None:
    try:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(ev.to_dict(), indent=1, allow_nan=False) + "\n")
    except OSError as err:
        raise DataAccessError(f"{json_file}: cannot write ({err})") from err
    console.print(f"metrics written to {json_file}")


def _evaluate_committed(
    protocol: str, model: str, data: Path | None, store: str | None, ref: str | None,
    aois: list[str] | None, scales: list[str] | None, save: Path | None, json_file: Path | None,
    report: Path | None, no_ssim: bool, endpoint_url: str | None,
) -> None:  # fmt: skip
    """``--commit``: every check first, then the evaluate flow; print what the store now holds."""
    if ref is not None or save is not None or report is not None:
        raise InvalidInputError(
            "--commit evaluates the branch head and commits the report to the store: "
            "drop --ref, --save-predictions and --report, or drop --commit"
        )
    from stliif.evaluation import Evaluation, evaluation_plan
    from stliif.models.predictor import BASELINE_NAMES, get_predictor
    from stliif.store import ArtifactStore
    from stliif_cli.options import store_spec
    from stliif_cli.runtime import flow_module, run_flow

    _scales(scales)
    root = data or default_data_root()
    spec = store_spec(store, endpoint_url=endpoint_url, write=True, create=protocol == "paper")
    st = ArtifactStore.open(spec, create=False) if protocol == "clean" else None
    plan = evaluation_plan(protocol, model, data=root, store=st, aois=aois)  # missing inputs: one line
    if plan.model not in BASELINE_NAMES:
        get_predictor(model, protocol=protocol)  # an unreadable checkpoint: one line, no server
    record = run_flow(
        flow_module("evaluate").evaluate, protocol=protocol, model=model, store=spec, data=str(root),
        aois=aois, scales=scales, ssim=not no_ssim,
    )  # fmt: skip
    doc = ArtifactStore.open(spec, create=False).read_json(record["path"])
    ev = Evaluation.from_dict(doc["evaluation"])
    _print(ev)
    console.print(f"{record['status']} [bold]{record['path']}[/] (snapshot {record['snapshot_id']})")
    if json_file is not None:
        _write_json(ev, json_file)


def _evaluate(
    protocol: str, model: str, data: Path | None, store: str | None, ref: str | None,
    aois: list[str] | None, scales: list[str] | None, save: Path | None, json_file: Path | None,
    report: Path | None, no_ssim: bool, endpoint_url: str | None,
) -> None:  # fmt: skip
    from stliif.evaluation import CLEAN_METRICS, PAPER_METRICS, evaluate_protocol, save_prediction
    from stliif.models.predictor import model_name

    name = model_name(model)  # an unknown model fails before any data is read
    chosen = _scales(scales)
    root = data or default_data_root()
    st = None
    if protocol == "clean":
        st = open_store(store, endpoint_url=endpoint_url)

    hooks: list[Callable[[PredictionEvent], None]] = []
    crops = None
    if report is not None:
        from stliif.evaluation.report import CropCollector

        crops = CropCollector(name, max(chosen, key=lambda s: chosen[s]))
        hooks.append(crops)
    saved: list[Path] = []
    if save is not None:

        def keep(event: PredictionEvent) -> None:
            if event.model == name:
                saved.extend(save_prediction(event, save))

        hooks.append(keep)

    def on_prediction(event: PredictionEvent) -> None:
        for hook in hooks:
            hook(event)

    with console.status(f"evaluating {name} and the baselines on protocol {protocol}..."):
        ev = evaluate_protocol(
            protocol, model, data=root, store=st, ref=ref, aois=aois, scales=chosen,
            ssim=not no_ssim, on_prediction=on_prediction if hooks else None,
        )  # fmt: skip
    _print(ev)
    metrics = PAPER_METRICS if protocol == "paper" else CLEAN_METRICS
    console.print(f"{len(ev.aois)} AOIs, metrics {', '.join(metrics)}; {ev.seconds:.1f} s")
    if json_file is not None:
        _write_json(ev, json_file)
    if save is not None:
        console.print(f"{len(saved)} scored images of {name} written to {save}")
    if report is not None:
        from stliif.evaluation.report import write_report

        command = _command(
            protocol, model, data, store, ref, aois, scales, save, json_file, report, no_ssim
        )
        path = write_report(ev, report, crops=crops, command=command)
        console.print(f"report written to {path}")

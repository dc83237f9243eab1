"""``stliif train``: train (or resume) a LIIF / Temporal LIIF run into a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from stliif.errors import InvalidInputError
from stliif_cli.options import BranchOpt, EndpointOpt, StoreOpt, build_spec, open_store

__all__ = ["calibrate", "train"]

console = Console()


def _spec_fields(spec_file: Path | None, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from stliif.train import CPU_MODEL, GPU_MODEL

    fields: dict[str, Any] = {}
    if spec_file is not None:
        try:
            fields = json.loads(spec_file.read_text())
        except (OSError, ValueError) as err:
            raise InvalidInputError(f"{spec_file}: not a readable JSON train spec ({err})") from err
        if not isinstance(fields, dict):
            raise InvalidInputError(f"{spec_file}: a train spec is a JSON object")
    elif preset in ("cpu", "gpu"):
        fields["model"] = CPU_MODEL if preset == "cpu" else GPU_MODEL
    else:
        raise InvalidInputError(f"unknown preset {preset!r}: use cpu or gpu")
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return fields


def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder (last.pt, best.pt, curves); resumed when it holds last.pt.")],
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="JSON train spec (fields of stliif.train.TrainSpec).")
    ] = None,
    preset: Annotated[str, typer.Option("--preset", help="Model preset without --spec: cpu or gpu.")] = "cpu",
    data: Annotated[Path | None, typer.Option("--data", help="WorldStrat root [default: $STLIIF_DATA or ../shared/...]")] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimisation steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Crops per step.")] = None,
    strategy: Annotated[str | None, typer.Option(help="complete, groups, pairs or single.")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every N steps.")] = None,
    n_val: Annotated[
        int | None, typer.Option("--n-val", help="Validation AOIs carved from the 21 (0: none, train on all; best.pt = last step).")
    ] = None,
    fit_offset: Annotated[
        bool | None, typer.Option("--fit-offset/--no-fit-offset", help="Register targets to the inputs with the grid offset fitted on the training AOIs.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init and batches.")] = None,
    bands: Annotated[
        int | None, typer.Option("--bands", help="3 (R, G, B) or 4 (R, G, B, NIR; needs --from-store).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Stop (checkpointed, resumable) after this many seconds.")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over even if the folder holds last.pt.")] = False,
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Train on the store's artifacts (protocol C scenes of its splits/paper AOIs; their versions go into the checkpoint) instead of the WorldStrat reference files.")
    ] = False,
    store: StoreOpt = None,
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
) -> None:
    """Train a model on the training AOIs, selecting on the validation AOIs (never on test)."""
    from stliif.train import TrainSpec
    from stliif.train import train as run_train

    overrides = {"data": str(data) if data else None, "steps": steps, "batch_size": batch_size,
                 "strategy": strategy, "val_every": val_every, "n_val": n_val, "seed": seed, "fit_offset": fit_offset,
                 "bands": bands, "threads": threads, "device": device, "source": "store" if from_store else None}  # fmt: skip
    spec = build_spec(TrainSpec, _spec_fields(spec_file, preset, overrides), "train spec")
    source = open_store(store, branch, endpoint_url) if spec.source == "store" else None
    result = run_train(spec, out, store=source, resume=not fresh, time_limit_s=time_limit)
    state = "finished" if result.finished else "stopped (rerun the same command to continue)"
    console.print(f"{result.step} steps, {state}; run folder {result.out_dir}")
    if result.best and not result.baseline:
        console.print(f"no validation AOIs: best.pt is the final step ({int(result.best['step'])})")
    elif result.best:
        scores = ", ".join(f"{k[5:]} {v:.2f}" for k, v in result.best.items() if k.startswith("psnr_"))
        base = ", ".join(f"{k[5:]} {v:.2f}" for k, v in result.baseline.items())
        console.print(f"best validation PSNR (step {int(result.best['step'])}): {scores} dB")
        console.print(f"median+bicubic on the same AOIs: {base} dB")


def calibrate(
    model: Annotated[Path, typer.Option("--model", help="Checkpoint file, or a run folder holding best.pt.")],
    weight: Annotated[float, typer.Option("--weight", help="Model weight in the blend with median + colour map (1: no blend).")] = 1.0,
    v_mean: Annotated[str, typer.Option("--v-mean", help="Match the mean of V = max(R,G,B) to the inputs': none, add or mul.")] = "add",
    offset: Annotated[bool, typer.Option("--offset/--no-offset", help="Fit the targets' sub-pixel offset on the input grid (training AOIs).")] = False,
    data: Annotated[Path | None, typer.Option("--data", help="WorldStrat root [default: the checkpoint's]")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="The store a checkpoint trained --from-store read its scenes from.")
    ] = None,
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
) -> None:
    """Store an output calibration in a checkpoint (choose its settings with bench/cv.py, never on test)."""
    from stliif.train import calibrate as run_calibrate

    path = model / "best.pt" if model.is_dir() else model
    source = open_store(store, branch, endpoint_url) if store is not None else None
    cal = run_calibrate(path, weight=weight, v_mean=v_mean, offset=offset, data=data, store=source)  # type: ignore[arg-type]
    dy, dx = cal.offset
    console.print(f"{path}: calibration stored (weight {cal.weight}, V mean {cal.v_mean}, offset dy {dy:+.2f} dx {dx:+.2f} px)")

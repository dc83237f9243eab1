"""What defines a training run: :class:`TrainSpec` (stored in its checkpoints) and the model presets.

No torch here: a spec can be written, validated and shown without loading the training stack.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stliif.config import default_data_root
from stliif.errors import InvalidInputError
from stliif.models.coords import TIME_SCALE_DAYS
from stliif.train.data import Strategy

__all__ = ["CPU_MODEL", "GPU_MODEL", "TrainSpec"]


CPU_MODEL: dict[str, Any] = {
    "name": "temporal-liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 32, "n_resblocks": 4}},
        "hidden": [64, 64, 64],
        "fusion_blocks": 1,
        "residual": "bilinear",
        "colour_map": True,
        "learn_shift": True,
    },
}
"""The CPU configuration (about 0.13 M parameters; see ``docs/models.md`` for timings)."""

GPU_MODEL: dict[str, Any] = {
    "name": "temporal-liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 64, "n_resblocks": 16}},
        "hidden": [256, 256, 256, 256],
        "fusion_blocks": 2,
        "residual": "bilinear",
        "colour_map": True,
        "learn_shift": True,
    },
}
"""A larger configuration (LIIF-sized encoder and decoder) for a lent GPU."""


class TrainSpec(BaseModel):
    """Everything that defines a training run (stored in its checkpoints)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: dict[str, Any] = Field(
        default_factory=lambda: json.loads(json.dumps(CPU_MODEL)),
        description="{name, args} model spec (registry key and constructor arguments).",
    )
    source: Literal["files", "store"] = Field(
        "files",
        description="Where the scenes come from: 'files' (protocol P's WorldStrat reference files "
        "under data) or 'store' (protocol C's artifacts of the store's splits/paper AOIs, their "
        "versions recorded in the checkpoint; see stliif.train.inputs).",
    )
    bands: Literal[3, 4] = Field(
        3,
        description="3 (R, G, B) or 4 (R, G, B, NIR = Sentinel-2 B04, B03, B02, B08 to SPOT's R, G, "
        "B, NIR): the model's input and output channels (set in the model's args). Four bands need "
        "source 'store' (the NIR of matched/clean and pansharpened; protocol P's files are RGB).",
    )
    data: str = Field(
        default_factory=lambda: str(default_data_root()),
        description="WorldStrat subset root (with reference/ for protocol P); source 'files' only.",
    )
    split_seed: int = Field(0, description="Seed of paper_split (validation AOIs).")
    n_val: int = Field(
        3, ge=0,
        description="Validation AOIs carved from the 21 training AOIs (0: none; the schedule was "
        "chosen beforehand, e.g. by cross-validation, and best.pt is the last step).",
    )
    train_aois: list[str] | None = Field(
        None, description="Training AOIs (default: the paper split's train part)."
    )
    val_aois: list[str] | None = Field(
        None, description="Validation AOIs (default: the paper split's val part)."
    )
    cross_validation: bool = Field(
        False, description="A fold of a cross-validation over every AOI (stliif.train.cv): its "
        "training AOIs may include the paper split's test AOIs, each held out by another fold.",
    )
    steps: int = Field(2000, ge=1, description="Supervised optimisation steps (sets the LR schedule).")
    pretrain_steps: int = Field(
        0, ge=0, description="Self-supervised steps before the supervised ones (stliif.train.pretext: "
        "each training revisit predicted from the others downsampled 2x; no HR image), with their "
        "own cosine schedule from lr; 0: none. A run takes pretrain_steps + steps steps.",
    )
    batch_size: int = Field(8, ge=1, description="Crops per step.")
    crop: int = Field(32, ge=4, description="LR crop side (px).")
    queries: int = Field(2304, ge=1, description="HR query points per crop.")
    scale_min: float = Field(2.0, gt=0, description="Smallest scale (output side / LR side).")
    scale_max: float = Field(7.0, gt=0, description="Largest scale (capped at the native HR).")
    strategy: Strategy = Field("complete", description="Temporal strategy of the crops.")
    augment: bool = Field(True, description="Random flips/transposes.")
    init_colour: bool = Field(
        False, description="Start the model's colour map at the 3x4 affine map fitted on the training AOIs."
    )
    freeze_colour: bool = Field(
        False, description="Keep the colour map at that fit (not learned; needs init_colour)."
    )
    fit_offset: bool = Field(
        False, description="Register the targets to the inputs with the grid offset fitted on the "
        "training AOIs (calibration.fit_offset); the checkpoint's calibration then queries at it.",
    )
    loss: Literal["l1", "l1-debiased", "l1-shift"] = Field(
        "l1", description="Training loss over a batch's query points: 'l1'; 'l1-debiased' (each crop's "
        "per-band mean error removed first, so colour bias is left to the calibration and the model "
        "learns structure, as bias-corrected super-resolution losses do); or 'l1-shift' (each crop's "
        "smallest L1 over the target shifted by up to 2 of its pixels each way, so misregistration "
        "is not learned as blur, as the WorldStrat baselines' shift-tolerant losses).",
    )
    lr: float = Field(1e-3, gt=0, description="Adam learning rate at the start.")
    lr_final: float = Field(1e-5, ge=0, description="Learning rate at the end (cosine decay).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    grad_clip: float | None = Field(1.0, description="Gradient-norm clip (None: off).")
    seed: int = Field(0, description="Seed of the model init and the batch sequence.")
    time_scale: float = Field(TIME_SCALE_DAYS, gt=0, description="Days per model time unit.")
    ckpt_every: int = Field(100, ge=1, description="Save last.pt every N steps.")
    val_every: int = Field(500, ge=0, description="Validate every N steps (0: only at the end).")
    val_scales: dict[str, int] = Field(
        default_factory=lambda: {"x2": 314, "x4": 628, "x6": 1054},
        description="Protocol P scales for validation: name -> output side (px).",
    )
    eval_frame: Literal["middle", "median"] = Field(
        "middle", description="Single-image models: which input they get at evaluation."
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: unchanged).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA if present.")
    workers: int = Field(0, ge=0, description="DataLoader worker processes (spawned).")
    chunk: int | None = Field(None, ge=1, description="Queries decoded at once at validation (None: per device).")

    @field_validator("train_aois", "val_aois")
    @classmethod
    def _not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise InvalidInputError("AOI lists must not be empty")
        return v

    @model_validator(mode="after")
    def _no_test(self) -> TrainSpec:
        """The paper split's test AOIs train and select nothing, except in a cross-validation fold."""
        from stliif.evaluation.paper import PAPER_TEST_AOIS

        if not self.cross_validation:
            bad = sorted((set(self.train_aois or []) | set(self.val_aois or [])) & set(PAPER_TEST_AOIS))
            if bad:
                raise InvalidInputError(f"test AOIs must not be used for training or selection: {bad}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _model_channels(cls, data: Any) -> Any:
        """A four-band run: the model's ``in_channels`` / ``out_channels`` set to 4 (refused when
        its args say otherwise, or when the scenes cannot have a NIR band)."""
        if not isinstance(data, dict) or str(data.get("bands", 3)).strip() != "4":
            return data  # three bands, or a value the field itself refuses
        if data.get("source", "files") != "store":
            raise InvalidInputError("four bands need source 'store' (train --from-store): protocol P's files are RGB")
        if data.get("init_colour") or data.get("fit_offset"):
            raise InvalidInputError("init_colour and fit_offset are RGB fits: not for a four-band run")
        model = json.loads(json.dumps(data.get("model") or CPU_MODEL))
        args = model.setdefault("args", {})
        for key in ("in_channels", "out_channels"):
            if int(args.get(key, 4)) != 4:
                raise InvalidInputError(f"a four-band run needs a model with {key} 4, got {args[key]}")
            args[key] = 4
        return {**data, "model": model}

    @model_validator(mode="after")
    def _pretrain_alone(self) -> TrainSpec:
        """The colour map fitted on the targets (init_colour) would be trained away by the pretext
        phase, whose targets are the revisits themselves."""
        if self.pretrain_steps and self.init_colour:
            raise InvalidInputError("init_colour fits the colour map to the HR targets: not with pretrain_steps")
        return self

    @field_validator("freeze_colour")
    @classmethod
    def _frozen_needs_init(cls, v: bool, info: Any) -> bool:
        if v and not info.data.get("init_colour"):
            raise InvalidInputError("freeze_colour keeps the fitted colour map: set init_colour too")
        return v

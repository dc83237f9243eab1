"""K-fold cross-validation of training configurations over the 21 non-test AOIs of protocol P.

Usage::

    .venv/bin/python bench/cv.py [--folds 3] [--steps 1200] [--only NAME ...] [--json cv.json]

Three validation AOIs are too few to choose a model on (the checkpoint of record led median +
bicubic by +0.89 dB on them and by +0.12 dB on test). Here every candidate configuration is
trained K times, each time on the other folds' AOIs, and scored on the held-out fold at the end
of its schedule (no step selection inside a fold), so every one of the 21 AOIs gets an
out-of-fold prediction. The same folds score the baselines: median + bicubic and median + colour
map + bicubic with the colour map fitted on the fold's training AOIs. It prints per-candidate
means over the 21 AOIs, paired deltas against median-colour (95 % bootstrap CI), for every output
calibration of ``GRID`` (:class:`stliif.models.calibration.Calibration`: model weight ``w`` in a
blend with median-colour, then the V-mean match to the inputs), each without and with the grid
offset (``o=fit``: :func:`~stliif.models.calibration.fit_offset` on the fold's training AOIs,
applied to the model's query coordinates and to the median term), and the best calibration by
the mean over AOIs and scales. Test AOIs are never read. Runs resume under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation import load_paper_samples, paired_deltas, paper_train_aois, score_image  # noqa: E402
from stliif.models.baselines import ColourMap, median_bicubic  # noqa: E402
from stliif.models.calibration import Calibration, fit_offset  # noqa: E402
from stliif.models.inference import ModelPredictor  # noqa: E402
from stliif.train import CPU_MODEL, TrainSpec, train  # noqa: E402
from stliif.train.cv import kfold  # noqa: E402

SCALES = {"x2": 314, "x4": 628, "x6": 1054}
GRID = [(w, mode) for w in (0.0, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0) for mode in ("none", "add", "mul")]
"""Calibrations scored per candidate: model weight in the blend with median-colour, V-mean mode."""

CANDIDATES: dict[str, dict] = {
    "record": {},
    "init-colour": {"init_colour": True},
    "frozen-colour": {"init_colour": True, "freeze_colour": True},
    "offset-trained": {"fit_offset": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--only", nargs="*", help="Candidate names to run.")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--out", type=Path, default=REPO / "stliif-runs" / "cv")
    ap.add_argument("--json", type=Path, help="Write per-AOI PSNRs as JSON.")
    args = ap.parse_args()
    aois = paper_train_aois(args.data)
    parts = kfold(aois, args.folds)
    samples = load_paper_samples(args.data, aois, with_dates=True)
    psnr: dict[str, dict[str, dict[str, float]]] = {}  # psnr[method][aoi][scale]

    def put(method: str, aoi: str, scale: str, pred: np.ndarray) -> None:
        t = samples[aoi].target_at(SCALES[scale])
        psnr.setdefault(method, {}).setdefault(aoi, {})[scale] = score_image(pred, t, ssim=False)["psnr"]

    cmaps = [ColourMap.fit((samples[a].frames, samples[a].target) for a in aois if a not in held) for held in parts]
    offsets = [fit_offset(((samples[a].frames, samples[a].target) for a in aois if a not in held), cmap)
               for held, cmap in zip(parts, cmaps, strict=True)]  # fmt: skip
    print("fitted offsets (dy, dx input px) per fold:", offsets, flush=True)
    for held, cmap, off in zip(parts, cmaps, offsets, strict=True):
        for a in held:
            s = samples[a]
            for sc, z in SCALES.items():
                put("median", a, sc, median_bicubic(s.frames, size=z))
                put("median-colour", a, sc, cmap.predictor()(s.frames, size=z))
                for mode in ("add", "mul"):
                    for o_name, o in (("0", (0.0, 0.0)), ("fit", off)):
                        cal = Calibration(weight=0.0, v_mean=mode, colour_map=cmap, offset=o)
                        put(f"median-colour v={mode} o={o_name}", a, sc, cal.apply(np.zeros((z, z, 3)), s.frames))
    for name, change in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        for k, held in enumerate(parts):
            fit_on = [a for a in aois if a not in held]
            spec = TrainSpec(**{"model": copy.deepcopy(CPU_MODEL), "steps": args.steps, "val_every": 0,
                                "threads": 2, "train_aois": fit_on, "val_aois": held, **change})  # fmt: skip
            t0 = time.perf_counter()
            res = train(spec, args.out / name / f"fold{k}", progress=False)
            pred = ModelPredictor.from_checkpoint(res.out_dir / "last.pt")
            for a in held:
                s = samples[a]
                for sc, z in SCALES.items():
                    for o_name, o in (("0", (0.0, 0.0)), ("fit", offsets[k])):
                        pred.calibration = Calibration(offset=o)  # raw output, queried at the offset
                        out = pred(s.frames, size=z, dates=s.dates, target_date=s.hr_date).astype(np.float64)
                        for w, mode in GRID:  # calibrations of this out-of-fold prediction
                            cal = Calibration(weight=w, v_mean=mode, colour_map=cmaps[k], offset=o)
                            put(f"{name} w={w} v={mode} o={o_name}", a, sc, cal.apply(out, s.frames))
            print(f"{name} fold {k}: {time.perf_counter() - t0:.0f} s", flush=True)
    ref = psnr["median-colour"]
    mean = {m: float(np.mean([per[a][sc] for a in aois for sc in SCALES])) for m, per in psnr.items()}
    print(f"\n{len(aois)} AOIs, {args.folds} folds, {args.steps} steps; PSNR x2 / x4 / x6 "
          "(delta vs median-colour [95 % CI]); mean over scales")  # fmt: skip
    for method, per in psnr.items():
        cells = []
        for sc in SCALES:
            v = [per[a][sc] for a in aois]
            d = paired_deltas(v, [ref[a][sc] for a in aois])
            cells.append(f"{np.mean(v):.2f} ({d.mean:+.2f} [{d.ci_low:+.2f}, {d.ci_high:+.2f}])")
        print(f"{method:30s} " + "  ".join(cells) + f"  {mean[method]:.3f}", flush=True)
    best = max((m for m in mean if " w=" in m), key=mean.__getitem__, default=None)
    if best:
        print(f"\nbest by the mean over the 21 AOIs and 3 scales: {best} ({mean[best]:.3f} dB)")
    if args.json:
        args.json.write_text(json.dumps({"folds": parts, "steps": args.steps, "psnr": psnr}, indent=1))


if __name__ == "__main__":
    main()

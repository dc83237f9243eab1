"""Cloud masks in the fusion over revisits, measured on the cross-validation's fold models (issue 19).

Usage::

    python bench/cloud_fusion.py --data ROOT --folds DIR [--json OUT]

``DIR`` holds ``fold<k>/{best.pt, scores-p.json}`` as ``bench/cv31_gpu.py --keep`` writes them
(calibrated fold models and the AOIs each held out). Every held-out AOI is scored in P mode twice
by its fold's model: as trained, and with the pixels that WorldStrat's cloud mask (``CLM``) flags
in a revisit excluded from Temporal LIIF's fusion (weight 0; a pixel flagged in every revisit
keeps its weights). The exclusion is an oracle of what a cloud input of the learned weights could
at most do by down-weighting: nothing is retrained. Prints per-AOI and paired deltas (95 %
bootstrap CI) over the 31 AOIs and over the 21 outside the paper split's test AOIs (the ones a
choice may look at).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation.paper import load_paper_sample, score_image  # noqa: E402
from stliif.evaluation.results import paired_deltas  # noqa: E402
from stliif.models.inference import ModelPredictor  # noqa: E402
from stliif.preprocess.split import PAPER_TEST_AOIS  # noqa: E402
from stliif.sources.worldstrat import find_aoi_files  # noqa: E402
from stliif.sources.worldstrat_metadata import read_metadata  # noqa: E402
from stliif.train.cv import SCALES  # noqa: E402

EXCLUDED = 1.0e4
"""Added to a flagged pixel's deviation from the median: with the learned penalty (> 1 per unit)
its logit falls by > 1e4, a weight of exactly 0 in float32."""


def cloud_masks(root: Path, aoi: str) -> np.ndarray:
    """``(5, H, W)`` bool: the CLM of the study's 5 selected revisits, in date order (as P's frames)."""
    with (root / "reference" / "study_temporal_selection.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["aoi"] == aoi)
    revisits = {r.n: r for r in find_aoi_files(root, aoi).revisits}
    dated = []
    for n in (int(v) for v in row["selected_revisits"].split(",")):
        with rasterio.open(revisits[n].masks["CLM"]) as src:
            dated.append((read_metadata(revisits[n].metadata)["date"], src.read(1) > 0))
    dated.sort(key=lambda d: d[0])  # load_paper_dates sorts the same dates (distinct per AOI)
    return np.stack([m for _, m in dated])


def exclude(predictor: ModelPredictor, masks: np.ndarray) -> torch.utils.hooks.RemovableHandle:
    """Zero the fusion weight of ``masks``' pixels in ``predictor``'s model until the handle is removed."""
    flagged = torch.from_numpy(masks & ~masks.all(axis=0, keepdims=True))[None, :, None]  # (1, T, 1, H, W)

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        feats, frames, dev, dt, mask = args
        return feats, frames, dev + EXCLUDED * flagged.to(dev), dt, mask

    return predictor.model.fusion.register_forward_pre_hook(hook)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--folds", type=Path, default=REPO / "stliif-runs/cv31-gpu/record")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    psnr: dict[str, dict[str, dict[str, float]]] = {"record": {}, "record-clm": {}}
    cloudy: dict[str, float] = {}
    for fold in sorted(args.folds.glob("fold*")):
        held = json.loads((fold / "scores-p.json").read_text())["held"]
        predictor = ModelPredictor.from_checkpoint(fold / "best.pt")
        for aoi in held:
            sample = load_paper_sample(args.data, aoi, with_dates=True)
            masks = cloud_masks(args.data, aoi)
            cloudy[aoi] = float(masks.mean())
            for method, excluded in (("record", False), ("record-clm", True)):
                handle = exclude(predictor, masks) if excluded else None
                try:
                    psnr[method][aoi] = {
                        scale: score_image(predictor(sample.frames, size=size, dates=sample.dates,
                                                     target_date=sample.hr_date),
                                           sample.target_at(size), ssim=False)["psnr"]
                        for scale, size in SCALES.items()
                    }  # fmt: skip
                finally:
                    if handle is not None:
                        handle.remove()
            d = [psnr["record-clm"][aoi][s] - psnr["record"][aoi][s] for s in SCALES]
            print(f"{fold.name} {aoi:22s} flagged {cloudy[aoi]:6.1%}  delta " + " / ".join(f"{v:+.3f}" for v in d), flush=True)
    summary: dict[str, Any] = {}
    for subset, aois in (("all", sorted(psnr["record"])), ("non-test", sorted(a for a in psnr["record"] if a not in PAPER_TEST_AOIS))):
        for scale in SCALES:
            pd = paired_deltas([psnr["record-clm"][a][scale] for a in aois], [psnr["record"][a][scale] for a in aois])
            better = sum(psnr["record-clm"][a][scale] > psnr["record"][a][scale] for a in aois)
            summary.setdefault(subset, {})[scale] = {"n": len(aois), "delta": pd.mean, "ci_low": pd.ci_low,
                                                     "ci_high": pd.ci_high, "better": better}  # fmt: skip
            print(f"{subset:8s} {scale}: n={len(aois)} delta {pd.mean:+.3f} [{pd.ci_low:+.3f}, {pd.ci_high:+.3f}] dB, "
                  f"better on {better}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"psnr": psnr, "flagged": cloudy, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()

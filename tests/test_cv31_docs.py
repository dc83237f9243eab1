"""docs/results.md's 31-AOI cross-validation: its tables are computed from docs/cv31.json, its
folds are ``kfold``'s, and fold 1's model re-scores its held-out AOIs as recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from stliif.train.cv import SCALES, kfold, summarize

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "docs" / "cv31.json").read_text())
LABELS = {"record (P mode)": "record", "record, product mode": "record-product",
          "median + colour map": "median-colour", "calibration alone (w=0)": "median-colour-cal",
          "median + bicubic": "median"}  # fmt: skip
TITLES = {"P targets (the study's), uint8 PSNR": "P", "C targets (our ETL), uint8 PSNR": "C",
          "C targets, reflectance PSNR": "C-refl"}  # fmt: skip
CELL = re.compile(r"^(-?\d+\.\d\d)(?: \(([+-]\d+\.\d\d) \[([+-]\d+\.\d\d), ([+-]\d+\.\d\d)\]\))?$")


def _section() -> list[str]:
    text = (ROOT / "docs" / "results.md").read_text()
    start = text.index("## Cross-validated over all 31 AOIs")
    return text[start : text.index("\n## ", start + 10)].splitlines()


def _tables() -> dict[str, dict[str, list[str]]]:
    """``{protocol: {method: [x2, x4, x6, mean cells]}}`` of the section's summary tables."""
    out: dict[str, dict[str, list[str]]] = {}
    proto = None
    for line in _section():
        head = next((p for t, p in TITLES.items() if line.startswith(t)), None)
        if head:
            proto = head
            out[proto] = {}
        elif proto and line.startswith("| ") and line.split(" | ")[0][2:] in LABELS:
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[proto][LABELS[cells[0]]] = cells[1:]
    return out


def _per_aoi_rows() -> dict[str, list[str]]:
    rows = {}
    for line in _section():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1].isdigit():
            rows[cells[0].rstrip("*")] = cells
    return rows


def test_the_summary_tables_are_computed_from_the_recorded_scores() -> None:
    summary = summarize(RECORD["psnr"])
    tables = _tables()
    assert set(tables) == {"P", "C", "C-refl"}
    for proto, methods in tables.items():
        assert set(methods) == set(LABELS.values())
        for m, cells in methods.items():
            for scale, cell in zip(SCALES, cells[:3], strict=True):
                c = summary[proto][m][scale]
                assert c["n"] == 31
                got = CELL.match(cell)
                assert got, f"{proto} {m} {scale}: {cell!r}"
                assert float(got[1]) == pytest.approx(round(c["mean"], 2), abs=1e-9), (proto, m, scale)
                if c["delta"] is None:
                    assert got[2] is None
                else:
                    want = [round(c[k], 2) for k in ("delta", "ci_low", "ci_high")]
                    assert [float(g) for g in got.groups()[1:]] == pytest.approx(want, abs=1e-9), (proto, m, scale)
            mean = np.mean([summary[proto][m][s]["mean"] for s in SCALES])
            assert float(cells[3]) == pytest.approx(round(mean, 3), abs=1e-9)


def test_the_per_aoi_table_is_the_recorded_scores_of_each_fold() -> None:
    rows = _per_aoi_rows()
    fold = {a: k for k, held in enumerate(RECORD["folds"]) for a in held}
    assert set(rows) == set(fold) and len(rows) == 31
    psnr = RECORD["psnr"]
    for aoi, cells in rows.items():
        assert int(cells[1]) == fold[aoi]
        want = [" / ".join(f"{psnr[p][m][aoi][s]:.2f}" for s in SCALES)
                for p in ("P", "C") for m in ("record", "record-product", "median-colour")]  # fmt: skip
        assert cells[2:] == want, aoi


@pytest.mark.integration
def test_the_folds_are_kfold_of_the_31_aois(worldstrat: Path) -> None:
    from stliif.evaluation.paper import paper_aois

    assert RECORD["folds"] == kfold(paper_aois(worldstrat), 5, RECORD["seed"])


@pytest.mark.integration
def test_fold_1_rescores_its_held_out_aois_as_recorded(worldstrat: Path) -> None:
    """The fold's model (weights of ``models/cv31-fold1``, no optimizer state) on its six
    held-out AOIs at x4, protocol P, every method: within 0.005 dB of docs/cv31.json."""
    from stliif.checkpoint import load_checkpoint
    from stliif.evaluation.paper import load_paper_samples
    from stliif.train.cv import score_fold

    path = ROOT / "tests" / "fixtures" / "cv31-fold1.pt"
    held = RECORD["folds"][1]
    ck = load_checkpoint(path)
    assert ck.train_spec is not None and ck.extra["cv"]["held_out"] == sorted(held)
    assert not set(ck.data["train_aois"]) & set(held)
    samples = load_paper_samples(worldstrat, held, with_dates=True)
    got = score_fold(path, held, samples, None, scales={"x4": SCALES["x4"]})["P"]
    for m, per in got.items():
        for aoi in held:
            assert per[aoi]["x4"] == pytest.approx(RECORD["psnr"]["P"][m][aoi]["x4"], abs=0.005), (m, aoi)

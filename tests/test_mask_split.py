"""Masks (clear fraction) and splits (paper, stratified) on synthetic and real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stliif.errors import InvalidInputError
from stliif.preprocess.mask import clear_mask, compute_masks
from stliif.preprocess.split import PAPER_TEST_AOIS, SplitManifest, paper_split, stratified_split
from stliif.sources.worldstrat import list_aois, read_aoi


def _cube(scl: bool = True) -> xr.Dataset:
    t, y, x = 2, 2, 2
    refl = np.ones((t, 3, y, x), np.float32)
    refl[1, 0, 1, 1] = np.nan
    ds = xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), refl),
            "clm": (("time", "y", "x"), np.array([[[0, 1], [0, 0]], [[0, 0], [0, 0]]], np.uint8)),
            "data_mask": (("time", "y", "x"), np.array([[[1, 1], [1, 0]], [[1, 1], [1, 1]]], np.uint8)),
        }
    )
    if scl:
        ds["scl"] = (("time", "y", "x"), np.array([[[4, 4], [4, 4]], [[9, 4], [4, 4]]], np.uint8))
    return ds


def test_clear_mask_combines_clm_scl_datamask_and_nan() -> None:
    m = clear_mask(_cube()).values
    assert m[0].tolist() == [[True, False], [True, False]]  # cloud (CLM), no data
    assert m[1].tolist() == [[False, True], [True, False]]  # SCL cloud high prob, NaN band
    no_scl = clear_mask(_cube(scl=False)).values
    assert no_scl[1, 0, 0]  # without SCL only CLM decides
    out = compute_masks(_cube())
    np.testing.assert_allclose(out["clear_fraction"].values, [0.5, 0.5])
    np.testing.assert_allclose(out["valid_fraction"].values, [0.75, 0.75])
    with pytest.raises(InvalidInputError, match="clm"):
        clear_mask(_cube().drop_vars("clm"))


def test_fully_clouded_real_revisit_has_zero_clear_fraction(worldstrat: Path) -> None:
    lr, _ = read_aoi(worldstrat, "Landcover-461460")
    frac = compute_masks(lr)["clear_fraction"]
    assert float(frac[lr["revisit"].values.tolist().index(6)]) == 0.0
    assert float(frac.max()) > 0.99


def test_paper_split_is_fixed_and_disjoint(worldstrat: Path) -> None:
    aois = list_aois(worldstrat)
    s = paper_split(aois, n_val=3, seed=0)
    assert set(s.test) == set(PAPER_TEST_AOIS) and len(s.val) == 3 and len(s.train) == 18
    assert not (set(s.train) & set(s.val) | set(s.train) & set(s.test) | set(s.val) & set(s.test))
    assert paper_split(list(reversed(aois)), seed=0) == s  # order of input does not matter
    assert SplitManifest.from_dict(s.to_dict()) == s and s.of(s.val[0]) == "val"
    with pytest.raises(InvalidInputError, match="missing"):
        paper_split(aois[:5])


def test_stratified_split_covers_each_stratum() -> None:
    aois = [f"a{i}" for i in range(12)]
    strata = {a: ("x" if i < 6 else "y") for i, a in enumerate(aois)}
    s = stratified_split(aois, strata, seed=1)
    assert sorted(s.train + s.val + s.test) == sorted(aois)
    for label in ("x", "y"):
        members = {a for a in aois if strata[a] == label}
        assert members & set(s.val) and members & set(s.test)
    assert stratified_split(aois, strata, seed=1) == s and stratified_split(aois, strata, seed=2) != s
    with pytest.raises(InvalidInputError):
        stratified_split(aois, strata, fractions=(0.5, 0.5, 0.5))

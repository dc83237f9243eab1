"""Every bad argument of every command is answered before anything starts: one `error:` line,
exit code 2, no traceback, nothing created (issue: runs that never lie, items 5 and 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

STLIIF = Path(sys.executable).with_name("stliif")
QUICK = 3.0
"""Seconds for an answer that needs no store read (the command's own start included)."""
HEAVY = 8.0
"""Seconds for one that reads the store or the model, or needs the geospatial stack (a temporary
Prefect server alone takes longer to start)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, worldstrat: Path) -> dict[str, str]:
    """A store holding raw/Landcover-14956, a plain file, and paths that do not exist."""
    from stliif.stages import run_stage
    from stliif.store import ArtifactStore

    root = tmp_path_factory.mktemp("cli-errors")
    store = ArtifactStore.open(str(root / "store"))
    run_stage(store, "import", "Landcover-14956", data=worldstrat)
    (root / "afile").write_text("not a store")
    return {"store": str(root / "store"), "file": str(root / "afile"), "missing": str(root / "typo"),
            "data": str(worldstrat), "root": str(root)}  # fmt: skip


R = "--aoi Landcover-14956 --date 2019-10-01 --scale 4"
CASES: list[tuple[str, str, str, float]] = [
    # (command line with {placeholders}, expected text, id, time limit)
    ("etl --data {missing} --store {root}/s1", "not a WorldStrat dataset", "etl-data", HEAVY),
    ("etl --aoi Nope --store {root}/s1", "unknown AOIs ['Nope']", "etl-aoi", HEAVY),
    ("etl --stage bogus --store {root}/s1", "stages.0: Input should be", "etl-stage", QUICK),
    ("etl --k 0 --store {root}/s1", "k: Input should be greater than or equal to 1", "etl-k", QUICK),
    ("etl --store {file}", "is a file, not a store folder", "etl-store-file", QUICK),
    ("etl --stage mask --aoi Nope --store {store}", "no raw/<aoi> cube in the store for ['Nope']", "etl-store-aoi", HEAVY),
    ("render --aoi Landcover-14956 --date 2019-13-01 --scale 4 --store {store}", "invalid date '2019-13-01'", "render-date", QUICK),
    ("render --aoi Landcover-14956 --start 2020-01-01 --end 2019-01-01 --scale 4 --store {store}", "is before start", "render-range", QUICK),
    ("render --aoi Landcover-14956 --date 2019-10-01 --store {store}", "exactly one of scale and gsd", "render-noscale", QUICK),
    ("render --aoi Landcover-14956 --date 2019-10-01 --scale 4 --gsd 2 --store {store}", "exactly one of scale and gsd", "render-both", QUICK),
    ("render --aoi Landcover-14956 --date 2019-10-01 --scale 40 --store {store}", "scale: Input should be less than or equal to 16", "render-scale", QUICK),
    ("render " + R + " --bbox 1,2,0,3 --store {store}", "crossing the antimeridian", "render-bbox", QUICK),
    ("render --aoi ../x --date 2019-10-01 --scale 4 --store {store}", "AOI name", "render-aoi-name", QUICK),
    ("render " + R + " --store {file}", "is a file, not a store folder", "render-store-file", QUICK),
    ("render " + R + " --store {missing}", "no store at", "render-store-missing", QUICK),
    ("render " + R + " --out {file} --store {store}", "is a file, not a folder", "render-out", QUICK),
    ("render --aoi Nope --date 2019-10-01 --scale 4 --store {store}", "raw/Nope is not in the store", "render-aoi", HEAVY),
    ("render --aoi Landcover-14956 --date 2030-01-01 --scale 4 --store {store}", "outside the model's temporal support", "render-far", HEAVY),
    ("render " + R + " --max-mb 1 --store {store}", "above the budget of 1 MiB", "render-budget", HEAVY),
    ("render " + R + " --model nothere --store {store}", "no such model 'nothere'", "render-model", HEAVY),
    ("acquire --aoi a --bbox 10,50,9,51 --start 2020-01-01 --end 2020-02-01 --store {root}/s2", "antimeridian", "acquire-bbox", QUICK),
    ("acquire --aoi a --bbox 10,95,11,96 --start 2020-01-01 --end 2020-02-01 --store {root}/s2", "bbox", "acquire-lat", QUICK),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-03-01 --end 2020-02-01 --store {root}/s2", "reversed", "acquire-dates", QUICK),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-01-01 --end 2020-02-31 --store {root}/s2", "not a valid date", "acquire-date", QUICK),
    ("acquire --aoi a --polygon {missing}.geojson --start 2020-01-01 --end 2020-02-01 --store {root}/s2", "polygon file not found", "acquire-polygon", HEAVY),
    ("acquire --aoi a --polygon {file} --start 2020-01-01 --end 2020-02-01 --store {root}/s2", "not a readable polygon file", "acquire-polygon-bad", HEAVY),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-01-01 --end 2020-02-01 --provider nope --store {root}/s2", "unknown provider 'nope'", "acquire-provider", HEAVY),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-01-01 --end 2020-02-01 --crs EPSG:0 --store {root}/s2", "CRS", "acquire-crs", HEAVY),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-01-01 --end 2020-02-01 --max-mb 0 --store {root}/s2", "max_mb", "acquire-budget", QUICK),
    ("acquire --aoi a --bbox 10,50,11,51 --start 2020-01-01 --end 2020-02-01 --store s3://bucket/x", "no S3 credentials", "acquire-s3", QUICK),
    ("pipeline --render-aoi Nope --store {root}/s3", "--render-aoi Nope", "pipeline-aoi", HEAVY),
    ("pipeline --model nothere --store {root}/s3", "no such model 'nothere'", "pipeline-model", HEAVY),
    ("crop raw/Landcover-14956 c1 --bbox 1,2,3 --store {store}", "--bbox needs 4", "crop-bbox", QUICK),
    ("crop raw/Nope c1 --bbox 1,2,3,4 --store {store}", "raw/Nope", "crop-source", HEAVY),
    ("crop raw/Landcover-14956 c1 --bbox 1,2,3,4 --store {store}", "aoi_outside_raster", "crop-outside", HEAVY),
    ("crop raw/Landcover-14956 c1 --bbox 1,2,3,4 --feature 1 --store {store}", "apply to a polygon crop only", "crop-options", HEAVY),
    ("train --out {root}/t1 --bands 4", "four bands need source 'store'", "train-bands", HEAVY),
    ("train --out {root}/t1 --bands 5 --from-store --store {store}", "bands: Input should be 3 or 4", "train-bands-value", HEAVY),
    ("evaluate --protocol clean --model median --store {missing}", "no store at", "evaluate-store", QUICK),
    ("evaluate --protocol paper --model nothere", "no such model 'nothere'", "evaluate-model", HEAVY),
    ("store log --store {missing}", "no store at", "log-missing", QUICK),
    ("store log --store {file}", "is a file, not a store folder", "log-file", QUICK),
    ("store ls --store {missing}", "no store at", "ls-missing", QUICK),
    ("store show raw/Nope --store {store}", "no artifact 'raw/Nope'", "show-missing", QUICK),
]


def _env(root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": f"{root}/prefect", "AWS_CONFIG_FILE": f"{root}/none",
            "AWS_SHARED_CREDENTIALS_FILE": f"{root}/none", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("line", "expected", "limit"), [(c[0], c[1], c[3]) for c in CASES], ids=[c[2] for c in CASES])
def test_bad_input_is_one_line_before_anything_starts(world: dict[str, str], line: str, expected: str, limit: float) -> None:
    args = line.format(**world).split()
    before = set(Path(world["root"]).iterdir())
    start = time.monotonic()
    out = subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=120,
                         cwd=world["root"], env=_env(world["root"]))  # fmt: skip
    took = time.monotonic() - start
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr[-1500:]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-1500:]
    assert expected in lines[0] and "errors.pydantic.dev" not in lines[0]
    assert out.stdout == ""
    assert took < limit, f"{took:.1f} s"
    created = set(Path(world["root"]).iterdir()) - before - {Path(world["root"]) / "prefect"}
    assert not created, f"a refused command created {created}"


def test_lock_that_cannot_be_taken_is_a_store_error(tmp_path: Path) -> None:
    from stliif.errors import StoreError
    from stliif.store import ArtifactStore

    store = ArtifactStore.open(str(tmp_path / "s"))
    (tmp_path / "s" / "stliif.lock").mkdir()  # an unusable lock file
    with pytest.raises(StoreError, match="cannot take the commit lock"):
        store.commit({"a": {"x": 1}}, stage="t", params={})
    assert store.list() == []


def test_store_locations_refused_before_touching_them(tmp_path: Path) -> None:
    from stliif.config import StoreSpec
    from stliif.errors import InvalidInputError, StoreError
    from stliif.location import check_location
    from stliif.store import ArtifactStore

    with pytest.raises(StoreError, match="no store at"):
        ArtifactStore.open(str(tmp_path / "typo"), create=False)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="not a store"):
        ArtifactStore.open(str(tmp_path / "full"))
    with pytest.raises(InvalidInputError, match="lacks a bucket"):
        check_location(StoreSpec(uri="s3://"))
    with pytest.raises(InvalidInputError, match="unsupported store uri"):
        check_location(StoreSpec(uri="gs://bucket/x"))


@pytest.mark.integration
def test_an_unwritable_render_folder_is_one_line_and_commits_nothing(world: dict[str, str], tmp_path: Path) -> None:
    """A --out folder the user cannot write: one line, exit 2, the store's branch unmoved."""
    import stat

    from stliif.store import ArtifactStore

    out = tmp_path / "locked"
    out.mkdir()
    before = ArtifactStore.open(world["store"], create=False).snapshot_id()
    root = os.geteuid() == 0  # root writes through permission bits: make the folder immutable instead
    if root:
        subprocess.run(["chattr", "+i", str(out)], check=True)
    else:
        out.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        res = subprocess.run([str(STLIIF), "render", *R.split(), "--model", "median", "--out", str(out / "renders"),
                              "--store", world["store"]], capture_output=True, text=True, timeout=120,
                             env=_env(str(tmp_path)), cwd=str(tmp_path))  # fmt: skip
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        else:
            out.chmod(0o755)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "is not a writable folder" in lines[0], res.stderr[-1500:]
    assert list(out.iterdir()) == []
    assert ArtifactStore.open(world["store"], create=False).snapshot_id() == before


def test_read_only_store_refused_before_any_file_is_written(world: dict[str, str], tmp_path: Path) -> None:
    """A store the user cannot write: one line, and render writes no file to --out."""
    import shutil
    import stat

    store, out = tmp_path / "store", tmp_path / "out"
    shutil.copytree(world["store"], store)
    out.mkdir()
    folders = [store, *(p for p in store.rglob("*") if p.is_dir())]
    # root writes through permission bits: make the folders immutable instead (chattr +i)
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", *map(str, folders)], check=True)
    else:
        for p in folders:
            p.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        for args in (["render", *R.split(), "--model", "median", "--out", str(out)], ["etl", "--stage", "mask"]):
            res = subprocess.run([str(STLIIF), *args, "--store", str(store)], capture_output=True, text=True,
                                 timeout=120, env=_env(str(tmp_path)), cwd=str(tmp_path))  # fmt: skip
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert res.returncode == 2 and len(lines) == 1 and "is not writable" in lines[0], res.stderr[-1500:]
        assert list(out.iterdir()) == []
    finally:
        if root:
            subprocess.run(["chattr", "-i", *map(str, folders)], check=True)
        else:
            for p in folders:
                p.chmod(0o755)

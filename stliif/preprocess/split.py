"""Train / validation / test splits of AOIs, stored as versioned manifests.

Model selection uses the validation AOIs only; the test AOIs are for the final report.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stliif.errors import InvalidInputError

__all__ = ["PAPER_TEST_AOIS", "SplitManifest", "carve_validation", "paper_split", "stratified_split"]

PAPER_TEST_AOIS: tuple[str, ...] = (
    "Amnesty_POI-13-1-1",
    "Landcover-31746",
    "Landcover-769356",
    "Landcover-769486",
    "Landcover-771536",
    "Landcover-1865521",
    "UNHCR-7977",
    "UNHCR-NERs009694",
    "UNHCR-NGAs036019",
    "UNHCR-THAs001547",
)
"""The study's 10 test AOIs (data README); the other 21 AOIs of ``lr_dataset`` are for training."""


@dataclass(frozen=True)
class SplitManifest:
    """Which AOIs are for training, validation (model selection) and testing."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    rule: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored as the manifest artifact)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SplitManifest:
        """Inverse of :meth:`to_dict`."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
        return cls(**fields)

    def of(self, aoi: str) -> str:
        """'train', 'val' or 'test' for ``aoi``."""
        for part in ("train", "val", "test"):
            if aoi in getattr(self, part):
                return part
        raise InvalidInputError(f"AOI {aoi!r} is not in split {self.name!r}")


def _unique(aois: Iterable[str]) -> list[str]:
    out = sorted(set(aois))
    if not out:
        raise InvalidInputError("a split needs at least one AOI")
    return out


def carve_validation(aois: Sequence[str], *, n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """``(train, val)``: ``n_val`` AOIs drawn (``random.Random(seed)``) from ``aois`` for
    validation, sorted; the others, in their order, for training (at least one is left)."""
    rest = list(aois)
    if not 0 <= n_val < len(rest):
        raise InvalidInputError(f"n_val must be in [0, {len(rest) - 1}], got {n_val}")
    val = sorted(random.Random(seed).sample(rest, n_val))
    return [a for a in rest if a not in val], val


def paper_split(aois: Iterable[str], *, n_val: int = 3, seed: int = 0) -> SplitManifest:
    """The study's split: its 10 test AOIs; ``n_val`` validation AOIs drawn (seeded) from the
    others; the rest for training. Test AOIs missing from ``aois`` are an error."""
    aois = _unique(aois)
    missing = sorted(set(PAPER_TEST_AOIS) - set(aois))
    if missing:
        raise InvalidInputError(f"paper split needs the study's test AOIs; missing: {missing}")
    train, val = carve_validation([a for a in aois if a not in PAPER_TEST_AOIS], n_val=n_val, seed=seed)
    return SplitManifest(
        name="paper",
        train=tuple(train),
        val=tuple(val),
        test=tuple(sorted(PAPER_TEST_AOIS)),
        rule=f"test = the study's 10 AOIs; val = random.Random({seed}).sample(others, {n_val})",
        seed=seed,
    )


def stratified_split(
    aois: Iterable[str],
    strata: Mapping[str, str],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> SplitManifest:
    """Seeded split stratified by ``strata`` (AOI -> label, e.g. land cover or source family).

    Within each stratum the AOIs are shuffled and cut by ``fractions`` (train, val, test), with
    rounding that gives every stratum of 3 or more AOIs at least one val and one test AOI.
    """
    aois = _unique(aois)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise InvalidInputError(f"fractions must be 3 non-negative numbers summing to 1: {fractions}")
    groups: dict[str, list[str]] = defaultdict(list)
    for a in aois:
        groups[strata.get(a, "unknown")].append(a)
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in sorted(groups):
        members = groups[label]
        rng.shuffle(members)
        n = len(members)
        n_test = max(round(n * fractions[2]), 1 if n >= 3 and fractions[2] > 0 else 0)
        n_val = max(round(n * fractions[1]), 1 if n >= 3 and fractions[1] > 0 else 0)
        parts["test"] += members[:n_test]
        parts["val"] += members[n_test : n_test + n_val]
        parts["train"] += members[n_test + n_val :]
    return SplitManifest(
        name="stratified",
        train=tuple(sorted(parts["train"])),
        val=tuple(sorted(parts["val"])),
        test=tuple(sorted(parts["test"])),
        rule=f"stratified by label, fractions {fractions}, random.Random({seed}) shuffles",
        seed=seed,
    )

"""Choose which k Sentinel-2 revisits of an AOI to use around the high-resolution (HR) date.

Two modes:

``paper`` (:func:`select_paper`) reproduces the original study. Its rule, "t1 + sum |t_i - t_(i+1)|
/ 2 closest to the HR date" over the sorted dates of a k-subset, telescopes to the midpoint of the
subset's earliest and latest dates, so it only decides those two. The study searched **all**
k-combinations of the revisits (not windows of consecutive dates: in 21 of 31 AOIs its earliest and
latest picks have more than k - 2 revisits between them). Here every (earliest, latest) pair with at
least k - 2 revisits between them is scored (equivalent to scoring every k-combination, in
O(n^2)). Ties in the gap go to the earliest first date, then the earliest last date: the first
optimal combination in :func:`itertools.combinations` order over the chronologically sorted
revisits, which also reproduces the study's choice in its 5 tied AOIs. The study's middle frames
came from file-system order and cannot be recovered; here they are the k - 2 revisits between the
two extremes nearest to the HR date (ties: earlier date, then lower revisit number).

``clean`` (:func:`select_clean`) involves no human choice: it keeps the revisits whose clear
fraction is at least ``min_clear`` and takes the k nearest to the HR date (see its docstring).

``study`` (:func:`from_selection`) records an explicit selection, e.g. the study's own frames from
``reference/study_temporal_selection.csv`` (see :func:`read_study_selection`).

All modes return a :class:`TemporalSubset`, revisits in chronological order.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from stliif.errors import InvalidInputError, NoDataError
from stliif.preprocess.mask import clear_fraction
from stliif.types import DateLike, Dates

__all__ = [
    "DEFAULT_MIN_CLEAR",
    "LARGE_GAP_DAYS",
    "DateLike",
    "TemporalSubset",
    "apply_subset",
    "clear_fractions",
    "from_selection",
    "read_study_selection",
    "select_clean",
    "select_paper",
    "select_revisits",
]

Mode = Literal["paper", "clean", "study"]

DEFAULT_MIN_CLEAR = 0.9
"""Default clear fraction (valid and cloud-free pixels) a revisit needs in ``clean`` mode."""

LARGE_GAP_DAYS = 30
"""A selection whose nearest revisit is further than this from the HR date gets a note."""

_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class TemporalSubset:
    """The k revisits chosen for an AOI, with what is needed to audit the choice.

    Dates are ISO strings; gaps are signed days (revisit date minus HR date, negative = before).
    """

    mode: Mode
    k: int
    revisits: tuple[int, ...]
    """WorldStrat revisit numbers n, chronological."""
    dates: tuple[str, ...]
    """Acquisition dates of ``revisits``, ``YYYY-MM-DD``."""
    hr_date: str
    gap_days: tuple[int, ...]
    """Date minus HR date of each selected revisit."""
    midpoint: str
    """Midpoint of the earliest and latest selected dates (the study's reference date); ISO 8601,
    ``YYYY-MM-DDT12:00`` when it falls on a half day."""
    midpoint_gap_days: float
    """Midpoint minus HR date, in days (a multiple of 0.5)."""
    clear_fraction: tuple[float, ...] | None = None
    """Fraction of valid, cloud-free pixels of each selected revisit, when known."""
    candidates: tuple[int, ...] = ()
    """Every revisit considered, chronological."""
    optimal_pairs: tuple[tuple[int, int], ...] = ()
    """``paper``: every (earliest, latest) revisit pair reaching the best midpoint gap, the chosen
    one first. More than one means the study's rule alone does not decide."""
    min_clear: float | None = None
    """``clean``: the clear-fraction threshold used."""
    n_eligible: int | None = None
    """``clean``: how many candidates reached ``min_clear``."""
    notes: tuple[str, ...] = ()

    @property
    def is_unique(self) -> bool:
        """Whether the extremes were decided by the rule alone (no tie-break needed)."""
        return len(self.optimal_pairs) <= 1

    @property
    def max_abs_gap_days(self) -> int:
        """Largest |date - HR date| over the selected revisits."""
        return max(abs(g) for g in self.gap_days)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists instead of tuples), inverse of :meth:`from_dict`."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TemporalSubset:
        """Rebuild a subset from :meth:`to_dict`'s output (e.g. read back from JSON)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidInputError(f"unknown TemporalSubset fields: {sorted(unknown)}")
        if data.get("mode") not in ("paper", "clean", "study"):
            raise InvalidInputError(f"unknown TemporalSubset mode {data.get('mode')!r}")
        try:
            kw = dict(data)
            kw["k"] = int(kw["k"])
            kw["revisits"] = tuple(int(v) for v in kw["revisits"])
            kw["dates"] = tuple(str(v) for v in kw["dates"])
            kw["gap_days"] = tuple(int(v) for v in kw["gap_days"])
            kw["midpoint_gap_days"] = float(kw["midpoint_gap_days"])
            if kw.get("clear_fraction") is not None:
                kw["clear_fraction"] = tuple(float(v) for v in kw["clear_fraction"])
            kw["candidates"] = tuple(int(v) for v in kw.get("candidates", ()))
            kw["optimal_pairs"] = tuple((int(a), int(b)) for a, b in kw.get("optimal_pairs", ()))
            kw["notes"] = tuple(str(v) for v in kw.get("notes", ()))
            if kw.get("min_clear") is not None:
                kw["min_clear"] = float(kw["min_clear"])
            if kw.get("n_eligible") is not None:
                kw["n_eligible"] = int(kw["n_eligible"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"not a TemporalSubset dict: {err}") from err


# --------------------------------------------------------------------------------------- inputs


def _to_days(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
        if arr.dtype.kind != "M":
            arr = arr.astype("datetime64[s]")
        arr = arr.astype("datetime64[D]")
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what}: not dates ({err})") from err
    if np.isnat(arr).any():
        raise InvalidInputError(f"{what}: contains NaT")
    return arr


class _Candidates:
    """Validated revisits sorted by (date, revisit number)."""

    def __init__(
        self,
        dates: Dates,
        revisits: Sequence[int],
        hr_date: DateLike,
        clear_fraction: Sequence[float] | None,
        k: int,
    ) -> None:
        days = _to_days(dates, "dates").reshape(-1)
        if days.size == 0:
            raise InvalidInputError("dates is empty: no revisit to select from")
        ns = np.asarray(revisits)
        if ns.shape != days.shape:
            raise InvalidInputError(f"{days.size} dates but {ns.size} revisit numbers")
        if ns.dtype.kind not in "iu":
            raise InvalidInputError(f"revisit numbers must be integers, got {ns.dtype}")
        if len(set(ns.tolist())) != ns.size:
            raise InvalidInputError(f"duplicate revisit numbers: {ns.tolist()}")
        hr = _to_days([hr_date], "hr_date")[0]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
        if k > days.size:
            raise InvalidInputError(f"k={k} but only {days.size} revisits")
        clear = None
        if clear_fraction is not None:
            clear = np.asarray(clear_fraction, dtype=np.float64).reshape(-1)
            if clear.shape != days.shape:
                raise InvalidInputError(f"{days.size} dates but {clear.size} clear fractions")
            if not np.all((clear >= 0) & (clear <= 1)):  # also rejects NaN
                raise InvalidInputError(f"clear fractions must lie in [0, 1], got {clear.tolist()}")
        order = np.lexsort((ns, days))
        self.days = days[order]
        self.ns = [int(n) for n in ns[order]]
        self.hr = hr
        self.gap = [int(g) for g in (self.days - hr) / _DAY]
        self.clear = None if clear is None else [float(c) for c in clear[order]]
        self.k = int(k)

    def subset(self, positions: Sequence[int], mode: Mode, **extra: Any) -> TemporalSubset:
        pos = sorted(positions)
        first, last = self.days[pos[0]], self.days[pos[-1]]
        half_days = int((last - first) / _DAY)  # midpoint = first + half_days / 2
        mid = first.astype("datetime64[h]") + np.timedelta64(12 * half_days, "h")
        mid_str = str(mid.astype("datetime64[D]")) + ("T12:00" if half_days % 2 else "")
        mid_gap = (self.gap[pos[0]] + self.gap[pos[-1]]) / 2
        notes = list(extra.pop("notes", ()))
        if self.gap[0] > 0 or self.gap[-1] < 0:
            side = "before" if self.gap[0] > 0 else "after"
            notes.append(f"hr_date {self.hr} is {side} every revisit")
        if self.clear is not None:
            clouded = [str(self.ns[p]) for p in pos if self.clear[p] == 0.0]
            if clouded:
                notes.append("no clear pixel in selected revisit(s) " + ", ".join(clouded))
        nearest = min(abs(self.gap[p]) for p in pos)
        if nearest > LARGE_GAP_DAYS:
            notes.append(f"nearest selected revisit is {nearest} days from hr_date")
        return TemporalSubset(
            mode=mode,
            k=len(pos),
            revisits=tuple(self.ns[p] for p in pos),
            dates=tuple(str(self.days[p]) for p in pos),
            hr_date=str(self.hr),
            gap_days=tuple(self.gap[p] for p in pos),
            midpoint=mid_str,
            midpoint_gap_days=float(mid_gap),
            clear_fraction=None if self.clear is None else tuple(self.clear[p] for p in pos),
            candidates=tuple(self.ns),
            notes=tuple(notes),
            **extra,
        )

    def nearest_key(self, p: int) -> tuple[int, int, int]:
        """Sort key: nearer to the HR date first, then earlier date, then lower revisit number."""
        return (abs(self.gap[p]), self.gap[p], self.ns[p])


# --------------------------------------------------------------------------------------- modes


def select_paper(
    dates: Dates,
    revisits: Sequence[int],
    hr_date: DateLike,
    *,
    k: int = 5,
    clear_fraction: Sequence[float] | None = None,
) -> TemporalSubset:
    """The study's rule: the k-subset whose earliest/latest midpoint is nearest the HR date.

    Every (earliest, latest) pair with at least ``k - 2`` revisits between them is scored by
    ``|midpoint - hr_date|``. Ties: earliest first date, then earliest last date (then lower revisit
    number for equal dates), i.e. the first optimal subset in ``itertools.combinations`` order over
    the sorted revisits. The ``k - 2`` middle revisits are those between the extremes nearest the HR
    date (ties: earlier date, then lower revisit number). Clouds are ignored, as in the study.

    Args:
        dates: Acquisition date of each revisit (anything ``numpy.datetime64`` parses).
        revisits: Revisit number of each date, unique.
        hr_date: Date of the HR image.
        k: Number of revisits to select, ``1 <= k <= len(dates)``.
        clear_fraction: Optional clear fraction of each revisit, only recorded.

    Returns:
        The subset, chronological, with every optimal pair in ``optimal_pairs``.

    Raises:
        InvalidInputError: Empty or mismatched inputs, bad dates, duplicate revisits, bad ``k``.
    """
    c = _Candidates(dates, revisits, hr_date, clear_fraction, k)
    n, k = len(c.ns), c.k
    # Twice the signed midpoint gap (integer) of each admissible (first, last) pair, in
    # tie-break order: first position, then last position.
    # A 1-subset is its own earliest and latest revisit; otherwise j - i >= k - 1.
    ends = (lambda i: (i,)) if k == 1 else (lambda i: range(i + k - 1, n))
    scored = [(abs(c.gap[i] + c.gap[j]), i, j) for i in range(n) for j in ends(i)]
    best = min(s for s, _, _ in scored)
    optimal = [(i, j) for s, i, j in scored if s == best]
    i, j = optimal[0]
    middle = sorted(range(i + 1, j), key=c.nearest_key)[: k - 2]
    positions = [i, *middle, j] if k > 1 else [i]
    return c.subset(positions, "paper", optimal_pairs=tuple((c.ns[a], c.ns[b]) for a, b in optimal))


def select_clean(
    dates: Dates,
    revisits: Sequence[int],
    hr_date: DateLike,
    clear_fraction: Sequence[float],
    *,
    k: int = 5,
    min_clear: float = DEFAULT_MIN_CLEAR,
) -> TemporalSubset:
    """Clear revisits nearest the HR date, with no human choice.

    Rule: the revisits with ``clear_fraction >= min_clear`` are *eligible*. If at least k are, the k
    eligible ones nearest the HR date are taken (ties: clearer, then earlier date, then lower
    revisit number). If fewer than k are, all eligible ones are taken and the rest is filled with
    the clearest of the others (ties: nearer, earlier, lower number); a fully clouded revisit is
    then possible and noted. A HR date far from every revisit (UNHCR-7977: 821 days) is not an
    error: the gaps are recorded and a note is added.

    Args:
        dates: Acquisition date of each revisit.
        revisits: Revisit number of each date, unique.
        hr_date: Date of the HR image.
        clear_fraction: Fraction in [0, 1] of valid, cloud-free pixels of each revisit
            (see :func:`clear_fractions`).
        k: Number of revisits to select, ``1 <= k <= len(dates)``.
        min_clear: Clear fraction a revisit needs to be eligible, in [0, 1].

    Returns:
        The subset, chronological, with ``n_eligible`` and ``min_clear`` recorded.

    Raises:
        InvalidInputError: Bad inputs (as :func:`select_paper`) or ``min_clear`` outside [0, 1].
        NoDataError: No revisit has a single clear pixel.
    """
    if clear_fraction is None:
        raise InvalidInputError("clean mode needs clear_fraction (see clear_fractions())")
    if not 0.0 <= float(min_clear) <= 1.0:
        raise InvalidInputError(f"min_clear must lie in [0, 1], got {min_clear!r}")
    c = _Candidates(dates, revisits, hr_date, clear_fraction, k)
    assert c.clear is not None
    clear = c.clear
    if max(clear) == 0.0:
        raise NoDataError(f"no clear pixel in any of the {len(clear)} revisits")
    positions = range(len(c.ns))
    eligible = sorted(
        (p for p in positions if clear[p] >= min_clear),
        key=lambda p: (abs(c.gap[p]), -clear[p], c.gap[p], c.ns[p]),
    )
    chosen = eligible[: c.k]
    notes = []
    if len(chosen) < c.k:
        rest = sorted(
            (p for p in positions if clear[p] < min_clear),
            key=lambda p: (-clear[p], *c.nearest_key(p)),
        )
        fill = rest[: c.k - len(chosen)]
        chosen += fill
        notes.append(
            f"only {len(eligible)} revisits reach min_clear={min_clear}; filled with the clearest: "
            + ", ".join(f"{c.ns[p]} ({clear[p]:.3f})" for p in fill)
        )
    return c.subset(
        chosen, "clean", min_clear=float(min_clear), n_eligible=len(eligible), notes=notes
    )


def from_selection(
    dates: Dates,
    revisits: Sequence[int],
    hr_date: DateLike,
    selected: Sequence[int],
    *,
    clear_fraction: Sequence[float] | None = None,
) -> TemporalSubset:
    """Record an explicit selection (mode ``study``), e.g. the study's own frames.

    Args:
        dates: Acquisition date of each revisit.
        revisits: Revisit number of each date, unique.
        hr_date: Date of the HR image.
        selected: Revisit numbers to keep, in any order.
        clear_fraction: Optional clear fraction of each revisit, only recorded.

    Raises:
        InvalidInputError: Bad inputs, or ``selected`` empty, repeated or not among ``revisits``.
    """
    sel = [int(n) for n in selected]
    if not sel:
        raise InvalidInputError("selected is empty")
    if len(set(sel)) != len(sel):
        raise InvalidInputError(f"selected revisits repeat: {sel}")
    c = _Candidates(dates, revisits, hr_date, clear_fraction, len(sel))
    missing = set(sel) - set(c.ns)
    if missing:
        raise InvalidInputError(f"selected revisits {sorted(missing)} are not among {sorted(c.ns)}")
    return c.subset([c.ns.index(n) for n in sel], "study")


def read_study_selection(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Read ``reference/study_temporal_selection.csv``: AOI -> revisits as the study listed them."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return {r["aoi"]: tuple(int(v) for v in r["selected_revisits"].split(",")) for r in rows}
    except (KeyError, ValueError, AttributeError) as err:
        raise InvalidInputError(f"{path}: not a study selection CSV ({err})") from err


# --------------------------------------------------------------------------------------- datasets


def clear_fractions(lr: xr.Dataset) -> np.ndarray:
    """Clear fraction per time step over the cube's area (:func:`stliif.preprocess.mask.clear_fraction`)."""
    return clear_fraction(lr).values.astype(np.float64)


def select_revisits(
    lr: xr.Dataset,
    *,
    mode: Literal["paper", "clean"],
    k: int = 5,
    clear_fraction: Sequence[float] | Mapping[int, float] | None = None,
    min_clear: float = DEFAULT_MIN_CLEAR,
) -> TemporalSubset:
    """Select revisits of a dataset as produced by ``read_lr``.

    Reads ``time``, ``revisit`` and ``attrs["hr_date"]``. Clear fractions come from
    ``clear_fraction`` (aligned with ``time``, or a mapping revisit -> fraction), else from the
    ``clm``/``data_mask`` masks when present (required in ``clean`` mode).

    Raises:
        InvalidInputError: Unknown mode, or the dataset lacks what the mode needs.
        NoDataError: ``clean`` mode and no clear pixel at all.
    """
    if mode not in ("paper", "clean"):
        raise InvalidInputError(f"mode must be 'paper' or 'clean', got {mode!r}")
    if "time" not in lr.coords or "revisit" not in lr.coords:
        raise InvalidInputError("dataset needs 'time' and 'revisit' coordinates (see read_lr)")
    if "hr_date" not in lr.attrs:
        raise InvalidInputError("dataset has no 'hr_date' attribute (see read_lr)")
    dates = lr["time"].values
    ns = [int(n) for n in lr["revisit"].values]
    if isinstance(clear_fraction, Mapping):
        try:
            clear = [float(clear_fraction[n]) for n in ns]
        except KeyError as err:
            raise InvalidInputError(f"clear_fraction has no entry for revisit {err}") from err
    elif clear_fraction is not None:
        clear = list(clear_fraction)
    elif "clm" in lr and "data_mask" in lr:
        clear = clear_fractions(lr).tolist()
    else:
        clear = None
    hr = lr.attrs["hr_date"]
    if mode == "paper":
        return select_paper(dates, ns, hr, k=k, clear_fraction=clear)
    if clear is None:
        raise InvalidInputError(
            "clean mode needs clear fractions: pass clear_fraction or a dataset with a 'clm' mask"
        )
    return select_clean(dates, ns, hr, clear, k=k, min_clear=min_clear)


def apply_subset(lr: xr.Dataset, subset: TemporalSubset) -> xr.Dataset:
    """The time steps of ``lr`` selected by ``subset``, chronological.

    Raises:
        InvalidInputError: A selected revisit is not in ``lr``.
    """
    ns = [int(n) for n in lr["revisit"].values]
    missing = set(subset.revisits) - set(ns)
    if missing:
        raise InvalidInputError(f"revisits {sorted(missing)} of the subset are not in the dataset")
    index = [ns.index(n) for n in subset.revisits]
    return lr.isel(time=index)

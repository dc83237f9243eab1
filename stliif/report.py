"""Human-readable run reports (markdown), built from the stages' small records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["etl_markdown"]


def _fmt_fractions(values: Iterable[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def etl_markdown(
    records: Iterable[Mapping[str, Any]], *, store_uri: str, branch: str, snapshot: str
) -> str:
    """Markdown summary of an ETL run: per AOI the revisits, HR date, clear fractions,
    selected dates per mode, and what each stage did (committed / unchanged / skipped / failed / not run)."""
    per_aoi: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    split_lines = []
    for r in records:
        if r["aoi"] is None:
            for name, sizes in r.get("summary", {}).items():
                split_lines.append(f"- split `{name}`: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
        else:
            per_aoi[r["aoi"]].append(r)
    lines = [
        "# ETL run",
        "",
        f"Store `{store_uri}`, branch `{branch}`, snapshot `{snapshot}`.",
        "",
        "| AOI | revisits | HR date | clear fraction per revisit (by date) | selected dates | stages |",
        "|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = defaultdict(int)
    for aoi in sorted(per_aoi):
        recs = per_aoi[aoi]
        summary = {r["stage"]: r.get("summary", {}) for r in recs}
        imp, mask = summary.get("import", {}), summary.get("mask", {})
        selected = "; ".join(
            f"{r['summary']['mode']}: {', '.join(r['summary'].get('dates', []))}"
            for r in recs
            if r["stage"] == "subset" and r.get("summary")
        )
        stages = ", ".join(f"{r['stage']} {r['status']}" for r in recs)
        for r in recs:
            counts[r["status"]] += 1
        lines.append(
            f"| {aoi} | {imp.get('revisits', '')} | {imp.get('hr_date', '')} | "
            f"{_fmt_fractions(mask.get('clear_fraction', []))} | {selected} | {stages} |"
        )
    lines += ["", "Stage runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    lines += split_lines
    for status in ("failed", "not run", "skipped"):
        listed = [f"- `{r['aoi']}` {r['stage']}: {r['reason']}" for aoi in sorted(per_aoi)
                  for r in per_aoi[aoi] if r["status"] == status]  # fmt: skip
        if listed:
            lines += ["", f"## {status.capitalize()}", *listed]
    return "\n".join(lines) + "\n"

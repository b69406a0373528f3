"""The census plan as text and as JSON (what `python -m compute census-plan` prints)."""

from __future__ import annotations

from dataclasses import asdict

from compute.census._estimate import Estimate, estimate
from compute.census._open import where
from compute.census._plan import CensusPlan
from compute.manifest import Manifest

__all__ = ["manifest_estimate", "plan_json", "plan_text"]


def manifest_estimate(plans: list[CensusPlan], manifest: Manifest, bandwidth_mb_s: float = 10.0) -> Estimate:
    """The :class:`Estimate` of building ``manifest``'s census studies (its other studies not counted)."""
    values = [d.nnz for p in plans for d in p.datasets]
    return estimate(cells=sum(p.n_cells for p in plans), values=None if any(v is None for v in values) else sum(values),
                    genes=max((p.n_genes for p in plans), default=0), model=manifest.model,
                    attribution=manifest.attribution, bandwidth_mb_s=bandwidth_mb_s,
                    datasets=sum(len(p.datasets) for p in plans))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _counts(counts: dict[str, int], top: int = 4) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {v:,}" for k, v in items[:top])
    return text + (f", +{len(items) - top} more" if len(items) > top else "")


def _caps(plan: CensusPlan) -> str:
    c = plan.caps
    per_type = f", {c['max_cells_per_cell_type']:,} per cell type" if c.get("max_cells_per_cell_type") else ""
    most = f"; at most {c['max_datasets']} datasets (the largest)" if c.get("max_datasets") else ""
    return (f"at most {c['max_cells_per_dataset']:,} cells per dataset{per_type} (a draw stratified by cell type, "
            f"seed {plan.seed}); datasets with under {c['min_cells_per_dataset']:,} matching cells left out{most}")


def plan_text(plans: list[CensusPlan], manifest: Manifest, bandwidth_mb_s: float = 10.0) -> str:
    """What the census entries of ``manifest`` bring in (per entry: the filter, every dataset as
    a study with its cells, donors, genes and diseases, the datasets left out and the filter
    values that match no cell), then the totals and the estimated disk and time."""
    lines = []
    for p in plans:
        lines.append(f"census entry '{p.entry}'" + (f" ({p.title})" if p.title != p.entry else "")
                     + f": {where(p)}, {p.experiment}")
        lines.append(f"  cells where {p.value_filter}")
        lines.append(f"  matching: {p.n_matching_cells:,} cells in {p.n_matching_datasets:,} datasets")
        lines.append(f"  caps: {_caps(p)}")
        lines.append(f"  {len(p.datasets)} datasets -> studies:")
        width = max([len(d.study_id) for d in p.datasets] + [5])
        lines.append(f"    {'study':{width}s}  {'cells':>15s}  {'donors':>6s}  {'genes':>6s}  diseases | title")
        for d in p.datasets:
            cells = f"{d.n_selected:,} of {d.n_matching:,}"
            lines.append(f"    {d.study_id:{width}s}  {cells:>15s}  {d.n_donors:6,d}  {d.n_genes:6,d}  "
                         f"{_counts(d.diseases, 3)} | {d.title}")
        for dataset_id, n, reason in p.skipped:
            lines.append(f"    left out: {dataset_id} ({n:,} matching cells): {reason}")
        if p.unmatched:
            lines.append("  filter values that match no cell (with the other conditions): "
                         + ", ".join(f"{k} {v!r}" for k, v in p.unmatched)
                         + "; check the spelling against the Census (labels as it writes them, or term ids)")
    diseases: dict[str, int] = {}
    types: set[str] = set()
    for p in plans:
        for d in p.datasets:
            for k, v in d.diseases.items():
                diseases[k] = diseases.get(k, 0) + v
            types |= set(d.cell_types)
    n_studies = sum(len(p.datasets) for p in plans)
    donors = sum(d.n_donors for p in plans for d in p.datasets)
    lines.append(f"total: {n_studies} studies, {sum(p.n_cells for p in plans):,} cells, {donors:,} donors (samples), "
                 f"{len(types)} cell types; diseases: {_counts(diseases, 8)}")
    e = manifest_estimate(plans, manifest, bandwidth_mb_s)
    disk = ", ".join(f"{k} {_size(v)}" for k, v in e.disk_bytes.items())
    lines.append(f"needs (estimated): download {_size(e.download_bytes)} (~{_duration(e.download_s)} at "
                 f"{e.bandwidth_mb_s:g} MB/s); disk {_size(e.total_disk_bytes)} ({disk}); build ~{_duration(e.build_s)} "
                 f"on 2 CPU cores ({e.cells:,} cells, {e.values:,} stored values, {e.genes:,} genes)")
    lines.append("  how estimated:")
    lines += [f"    - {h}" for h in e.how]
    for p in plans:
        lines.append(f"plan of '{p.entry}' kept in {p.folder} (the build reuses it); no expression was downloaded")
    return "\n".join(lines)


def plan_json(plans: list[CensusPlan], manifest: Manifest, bandwidth_mb_s: float = 10.0) -> dict:
    """The plans and the estimate as JSON-able data."""
    e = manifest_estimate(plans, manifest, bandwidth_mb_s)
    return {"manifest": str(manifest.path), "plans": [p.to_dict() for p in plans],
            "estimate": {**asdict(e), "total_disk_bytes": e.total_disk_bytes}}

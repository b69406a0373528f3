"""What the page says, before anything runs, when the Data switch (real / simulated) keeps
studies that hold no disease besides the reference donors' (issue 36, item 8): on the demo,
"real" keeps one study of healthy donors, so there is nothing to rank and no null to draw. One
message says so and what to do; the query is not run."""

from __future__ import annotations

import numpy as np

from compute.errors import QueryError
from compute.query import QueryParams, query_cells, reference_labels, selection_mask

__all__ = ["nothing_to_rank", "plural"]


def plural(n: int, one: str, many: str | None = None) -> str:
    """"1 sample", "2 samples" (``many``: the plural when it is not ``one`` + "s")."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _listing(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def nothing_to_rank(atlas, params: QueryParams) -> str | None:
    """The message shown instead of running ``params`` when its Data switch (``params.data``:
    "real" or "simulated") keeps cells of no disease but the reference's (``params.reference``)
    under the other filters: which studies it keeps, what they hold, and what to do. None when
    the switch is "all", when the selection holds a disease to rank, or when it is empty (the
    query's own message says so)."""
    if params.data == "all":
        return None
    try:
        mask = np.asarray(selection_mask(atlas, params), dtype=bool)
        if not mask.any():
            return None
        cells = query_cells(atlas, params)
        chosen = cells.loc[mask]
        reference = set(reference_labels(atlas, params, chosen))
    except QueryError:  # an unknown filter value or reference: the query says which
        return None
    diseases = sorted(set(chosen["disease"].astype(str)) - reference)
    if diseases:
        return None
    studies = sorted(set(chosen["study"].astype(str)))
    n_samples = int(chosen["sample"].astype(str).nunique()) if "sample" in chosen else 0
    other = "simulated" if params.data == "real" else "real"
    held = _listing(sorted(set(chosen["disease"].astype(str)))) or "no disease label"
    kind_studies = [s for s in atlas.studies if bool(s.simulated) == (params.data == "simulated")]
    whole = len(studies) == len(kind_studies)
    which = (f"this atlas's {params.data} data" if whole else f"the {params.data} cells the filters select") + \
        f" ({_listing(studies)}: {plural(int(mask.sum()), 'cell')} from {plural(n_samples, 'sample')}, all '{held}')"
    advice = (f"Set Data to 'all' or '{other}' to rank the diseases of the {other} studies"
              + (", or build an atlas from real studies (README, 'Your own data')." if params.data == "real" else ".")
              if whole else f"Widen the filters, or set Data to 'all' or '{other}'.")
    return (f"Nothing to rank: {which} hold{'s' if whole else ''} no disease besides the reference donors' ('{params.reference}'), "
            f"so the query was not run and no null was drawn. {advice}")

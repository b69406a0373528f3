"""Pure figure functions: data in, ``go.Figure`` out. Tested on ``fig.to_dict()``.

Each figure is written as plain dicts (its traces, annotations, shapes and layout) and made a
``go.Figure`` once, by ``common._figure``, which Plotly checks whole: building it trace by trace
(``add_trace``, ``update_layout``) checked and copied every property again at each step, most of
the time a result's views took to draw.

Conventions shared by every figure: Okabe-Ito ``PALETTE`` for categories, viridis for continuous
values, open markers or an explicit "SIMULATED" label wherever simulated data appears, and an
``empty_figure`` that says why whenever there is nothing to draw.

One module per tab, named like the tab (as ``views.<tab>`` and ``callbacks.<tab>``): ``diseases``
(the ranking, forest, robustness, driver-gene and score-comparison figures), ``cells`` (the UMAP),
``genes`` (the genes x groups heatmap and dot plot) and ``modules`` (the co-attribution heatmap).
``common`` holds what several tabs use, re-exported here (``from dashboard import figures``). The
Studies tab draws no figure; the "Genes in a cell type" tab draws its two in ``views.cell_genes``.
"""

from __future__ import annotations

from dashboard.figures.common import (
    GRID_FORMATS,
    LABEL_PALETTE,
    PALETTE,
    PRESENTER_PX,
    TEMPLATE,
    bh_q_values,
    distinct_colours,
    empty_figure,
    format_p,
    format_pq,
    format_q,
    format_value,
    label_colours,
    subsample_indices,
)

__all__ = ["GRID_FORMATS", "LABEL_PALETTE", "PALETTE", "PRESENTER_PX", "TEMPLATE", "bh_q_values", "distinct_colours", "empty_figure", "format_p",
           "format_pq", "format_q", "format_value", "label_colours", "subsample_indices"]

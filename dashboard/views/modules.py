"""The Modules tab: where a signature sits among the atlas's gene modules, the module browser and
the co-attribution heatmap. Data in, views out (``signature_modules`` runs its permutations here,
under a second)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dash_mantine_components as dmc
import numpy as np
import pandas as pd
from dash import dcc, html

from compute.genemodules import GeneModules, signature_modules
from dashboard import figures, ids
from dashboard.figures.modules import coattribution_heatmap
from dashboard.views import components as ui

if TYPE_CHECKING:
    from dashboard.data import DashboardData

__all__ = ["TOP_MISSING", "modules_tab", "module_detail", "modules_table", "modules_view"]

TOP_MISSING = 10  # co-attributing genes drawn in the modules heatmap and offered by "Add the top 10"
SIGNIFICANT = 0.05  # the p-value under which the plain-language reading calls a result more than chance


def _perm_p(p: float, n_perm: int) -> str:
    return figures.format_p(p, 1 / (1 + n_perm) if n_perm > 0 else None)


def _not_considered(res, sm, gm: GeneModules) -> list:
    """Why each signature gene is left out of the module analysis, one line per reason."""
    prm = gm.params
    sparse = f"detected in < {prm.get('min_detection', 0.01):.0%} of cells, too few to correlate"
    if prm.get("max_genes") and len(gm.genes) >= prm["max_genes"]:
        sparse += f", or not among the {prm['max_genes']:,} most often detected genes"
    groups = [(genes, why) for genes, why in ((res.missing, "absent from the gene order (not in the model)"),
                                              (res.not_genes, "not a gene (a word, a number, a name no gene has)"),
                                              (res.ambiguous, "ambiguous names (several genes of the gene order), not used"),
                                              (sm.not_considered, sparse)) if genes]
    if not groups:
        return []
    n = sum(len(g) for g, _ in groups)
    return [html.Div([html.Span(f"Not considered ({n}):", className="lbl"),
                      html.Ul([html.Li([", ".join(genes), html.Span(f" – {why}", className="lbl")]) for genes, why in groups])],
                     id=ids.MODULES_NOT_CONSIDERED, className="missing")]


def _reading(sm, top) -> str:
    """One line for a clinician: do the signature's genes carry attribution together?"""
    if len(sm.considered) < 2 or not np.isfinite(sm.z):
        return "Too few of the signature's genes are detected widely enough to tell whether they carry attribution together."
    if sm.p_value <= SIGNIFICANT and sm.z > 0:
        text = ("Reading: the genes carry attribution together, in the same cells, more than random gene sets of the same "
                "size do: they behave like one program.")
        if top is not None:
            text += f" The clearest overlap is module {top['name']} ({top['overlap']} of its {top['size']} genes)."
        return text
    return ("Reading: the genes carry attribution together no more than random gene sets of the same size: the signature may "
            "mix several programs, or programs active in different cells.")


def modules_view(data: DashboardData, result, gm: GeneModules, *, presenter: bool = False) -> dict:
    """The Modules tab: where the signature of ``result`` (None: no query yet) sits among the
    atlas's gene modules ``gm``. Returns {"summary": components, "overlap_rows", "missing_rows":
    grid rows, "top_missing": the first TOP_MISSING missing genes, "figure": the co-attribution
    heatmap, "module_options", "module_value": the module Select's data and value, "modules":
    {module number (str): name, size, coherence, z, p_value, hub_genes, genes}, "method": the
    caption}; the heatmap for a projector when ``presenter``. Pure: ``signature_modules`` runs its
    permutations here (under a second)."""
    table = gm.table
    prm = gm.params
    n_perm = int(prm.get("n_perm", 0))
    modules = {str(int(r["module"])): {"name": str(r["name"]), "size": int(r["size"]), "coherence": float(r["coherence"]),
                                       "z": float(r["z"]), "p_value": float(r["p_value"]), "hub_genes": str(r["hub_genes"]),
                                       "genes": [str(g) for g in r["genes"]]} for _, r in table.iterrows()}
    options = [{"value": k, "label": f"{m['name']} · {m['size']} genes · z = {m['z']:.1f}"} for k, m in modules.items()]
    method = (f"Modules are atlas-wide: every cell counts, whatever the cell filters. How they are found: "
              f"{gm.method or 'not computed'}; genes detected in ≥ {prm.get('min_detection', 0.01):.0%} of "
              f"cells ({len(gm.genes):,} genes), cut where the average correlation falls below r = {prm.get('r_cut', 0):g}, "
              f"modules of ≥ {prm.get('min_size', 0)} genes. Coherence r̄ is the mean correlation over a gene set's pairs; its "
              f"z-score is a permutation z-score against {n_perm:,} bin-matched random gene sets (each gene replaced by a random "
              "gene of similar mean attribution and detection), with an empirical p-value. Overlap p-values are hypergeometric; "
              "a missing gene's z compares its mean correlation with the signature against all other genes (median, MAD).")
    out = {"summary": [], "overlap_rows": [], "missing_rows": [], "top_missing": [], "module_options": options,
           "module_value": options[0]["value"] if options else None, "modules": modules, "method": method,
           "figure": figures.empty_figure("Run a query to see how its genes co-attribute")}
    if not modules:
        n, size = len(gm.genes), prm.get("min_size", 0)
        why = (f"only {n} {'gene qualifies' if n == 1 else 'genes qualify'} (detected in ≥ {prm.get('min_detection', 0.01):.0%} "
               f"of cells), and a module needs at least {size}" if n < max(int(size), 2) else
               f"none of its {n:,} widely detected genes fall into a group of at least {size} genes that carry attribution together")
        out["summary"].append(dmc.Alert(f"This atlas has no gene modules: {why}.", color="orange", p="xs", id=ids.MODULES_NONE))
    if result is None:
        out["summary"].append(dmc.Text("The signature's place among the modules appears once a query has run (paste genes or "
                                       "pick a preset).", id=ids.MODULES_READING))
        return out
    res = result.resolution
    sm = signature_modules(gm, list(res.matched))
    n_req = len(res.matched) + len(res.missing) + len(res.ambiguous)
    n_in = len(sm.considered)
    # the same count as the gene box first ("88 of 99 matched"), then how many of those the modules cover
    head = (f"{len(res.matched)} of {n_req} signature genes matched the atlas; {n_in} of these {len(res.matched)} are among "
            f"the {len(gm.genes):,} genes the modules were built from")
    if n_in >= 2 and np.isfinite(sm.z):
        head += (f"; coherence r̄ = {sm.coherence:.3f} (random gene sets of the same size: {sm.null_mean:.3f} ± {sm.null_sd:.3f}), "
                 f"z = {sm.z:.1f}, {_perm_p(sm.p_value, sm.n_perm)}")
    overlaps = sm.overlaps
    top = overlaps.iloc[0] if len(overlaps) and overlaps["p_value"].iloc[0] <= SIGNIFICANT else None
    out["summary"] += [dmc.Text(head, fw=700, id=ids.MODULES_HEAD),
                       dmc.Text(_reading(sm, top), id=ids.MODULES_READING), *_not_considered(res, sm, gm)]
    out["overlap_rows"] = [{"module": r.name, "size": int(r.size), "overlap": int(r.overlap), "overlap_genes": r.overlap_genes,
                            "jaccard": round(float(r.jaccard), 3), "p_value": float(f"{r.p_value:.2g}"),
                            "module_z": round(float(r.module_z), 1)} for r in overlaps.itertuples()]
    missing = sm.missing
    out["missing_rows"] = [{"gene": r.gene, "mean_r": round(float(r.mean_r), 3), "z": round(float(r.z), 1) if np.isfinite(r.z) else None,
                            "module": r.module} for r in missing.itertuples()]
    out["top_missing"] = [str(g) for g in missing["gene"].head(TOP_MISSING)]
    if len(overlaps):
        out["module_value"] = str(int(overlaps["module"].iloc[0]))
    genes = [*sm.considered, *out["top_missing"]]
    if len(genes) >= 2:
        index = gm.index()
        idx = [index[g] for g in genes]
        names = {int(m): n for m, n in zip(table["module"], table["name"], strict=True)} if len(table) else {}
        out["figure"] = coattribution_heatmap(
            gm.corr[np.ix_(idx, idx)], genes, n_in, modules=[names.get(int(gm.labels[i]), "") for i in idx],
            simulated=data.atlas.has_simulated, presenter=presenter,
            title=f"Co-attribution: the signature's {n_in} genes and the top {len(out['top_missing'])} genes missing from it")
    else:
        out["figure"] = figures.empty_figure("Fewer than two of the signature's genes are among the module genes: nothing to correlate")
    return out


def modules_table(data: DashboardData, result, gm: GeneModules):
    """The data behind the modules heatmap (CSV export): one row per drawn gene (gene, set:
    "signature" / "missing", module) and its correlation with every drawn gene."""

    fig = modules_view(data, result, gm)["figure"]
    meta = fig.layout.meta or {}
    genes = meta.get("genes") or []
    if not genes:
        return pd.DataFrame(columns=["gene", "set", "module"])
    idx = [gm.index()[g] for g in genes]
    corr = pd.DataFrame(gm.corr[np.ix_(idx, idx)].astype(float).round(4), columns=genes)
    n_sig = int(meta["n_signature"])
    head = pd.DataFrame({"gene": genes, "set": ["signature" if i < n_sig else "missing" for i in range(len(genes))],
                         "module": meta["modules"]})
    return pd.concat([head, corr], axis=1)


def module_detail(module: dict | None, n_perm: int = 0) -> list:
    """The module browser's text for one module (an entry of ``modules_view(...)["modules"]``)."""
    if not module:
        return [dmc.Text("No module selected.", c="dimmed", size="sm")]
    stats = (f"{module['name']}: {module['size']} genes · coherence r̄ = {module['coherence']:.3f} · z = {module['z']:.1f} · "
             f"{_perm_p(module['p_value'], n_perm)}")
    return [dmc.Text(stats, fw=700, size="sm"),
            html.Div([html.Span("Hub genes (most correlated with the rest): ", className="lbl"),
                      html.Span(module["hub_genes"], id=ids.MODULE_HUBS)]),
            html.Div([html.Span("All genes: ", className="lbl"), html.Span(", ".join(module["genes"]), id=ids.MODULE_GENES)])]


# -- the layout --------------------------------------------------------------------------------
def modules_tab(data: DashboardData) -> dmc.Stack:
    """The Modules tab: the signature among the atlas's gene modules, then the module browser.
    Filled by ``callbacks.modules.render_modules`` only while the tab shows (the build stores the modules)."""
    s = data.summary
    overlap_grid = ui.grid(ids.MODULES_OVERLAP_GRID, [
        {"field": "module", "width": 105}, {"field": "size", "width": 90}, {"field": "overlap", "width": 105},
        {"field": "overlap_genes", "headerName": "overlapping genes", "flex": 1, "minWidth": 240, "wrapText": True, "autoHeight": True,
         "cellStyle": {"wordBreak": "normal", "lineHeight": "unset", "paddingTop": "10px", "paddingBottom": "10px"}},
        {"field": "jaccard", "headerName": "Jaccard", "width": 110},
        {"field": "p_value", "headerName": "p (overlap)", "width": 145, "sort": "asc",
         "headerTooltip": "hypergeometric: the chance of sharing this many genes or more"},
        {"field": "module_z", "headerName": "module z", "width": 125, "headerTooltip": "the module's own coherence z-score"},
    ], csv_name="sigatlas-module-overlaps.csv")
    missing_grid = ui.grid(ids.MODULES_MISSING_GRID, [
        {"field": "gene", "flex": 1, "minWidth": 100},
        {"field": "mean_r", "headerName": "mean r", "width": 130, "sort": "desc",
         "headerTooltip": "mean correlation with the signature's genes"},
        {"field": "z", "width": 85, "headerTooltip": "against all other genes: (x - median) / (1.4826 MAD)"},
        {"field": "module", "width": 105},
    ], csv_name="sigatlas-missing-genes.csv")
    spinner = dmc.Group([dmc.Loader(size="sm"), dmc.Text("Reading the atlas's gene modules…", size="sm")],
                        gap="xs", className="modules-spinner")
    missing = html.Div([
        ui.grid_title("Co-attributing genes missing from the signature", ui.csv_button(ids.MODULES_MISSING_CSV)),
        dmc.Button(f"Add the top {TOP_MISSING} to the signature", id=ids.ADD_MISSING, size="compact-sm", variant="light", disabled=True,
                   className="grid-title"),
        missing_grid], className="panel")
    browser = html.Div([
        dmc.Text("Browse the atlas's gene modules", fw=700, size="sm", className="grid-title"),
        dmc.Group([dmc.Select(id=ids.MODULE_SELECT, data=[], placeholder="a module (name · size · z)", searchable=True, size="xs", w=260,
                              allowDeselect=False),
                   dmc.Button("Use this module as the signature", id=ids.USE_MODULE, size="compact-sm", variant="light", disabled=True)],
                  gap="xs"),
        html.Div(id=ids.MODULE_DETAIL, className="module-detail"),
    ], className="panel modules-browser")
    content = html.Div([
        dcc.Interval(id=ids.MODULES_POLL, interval=4000, disabled=True),
        html.Div(id=ids.MODULES_SUMMARY, className="modules-summary"),
        html.Div([ui.grid_title("Modules the signature overlaps", ui.csv_button(ids.MODULES_OVERLAP_CSV)), overlap_grid], className="panel"),
        # the two ways to rewrite the signature from here, side by side
        dmc.Grid([dmc.GridCol(missing, span={"base": 12, "lg": 6}), dmc.GridCol(browser, span={"base": 12, "lg": 6})]),
        ui.graph("modules", 420),
    ])
    sim = [ui.sim_badge(s, ids.MODULES_SIM, " · modules are computed over every study")] if s["n_simulated"] else []
    return dmc.Stack([
        *sim,
        dcc.Loading(content, id=ids.MODULES_LOADING, delay_show=300, custom_spinner=spinner, overlay_style={"visibility": "visible", "opacity": 0.4}),
        html.Div(id=ids.MODULES_METHOD, className="note"),
    ], gap="sm")

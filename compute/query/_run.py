"""One signature query over an atlas: resolve genes, score, select, hit, rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.errors import QueryError
from compute.genes import GeneResolution
from compute.query._expression import expression_scores
from compute.query._meta import MetaAnalysis, donor_table, meta_analyse
from compute.query._null import (
    NullResult,
    Panels,
    check_draw_pool,
    gene_bins,
    matched_draws,
    null_rankings,
)
from compute.query._stats import HitRule, hit_share, rank_groups, sample_hit_table
from compute.query._vif import variance_inflation

__all__ = ["Evidence", "QueryParams", "QueryResult", "add_evidence", "reference_labels", "run_query", "run_ranking", "selection_matrix",
           "selection_rows", "with_effects"]

ROBUSTNESS_PERCENTILES = (80.0, 90.0, 95.0, 99.0)
NULL_BAND = (2.5, 97.5)

MAX_GENES = 5000
DATA_KINDS = ("all", "real", "simulated")


@dataclass(frozen=True)
class QueryParams:
    """Everything that determines a query's answer (besides the atlas)."""

    genes: tuple[tuple[str, float | None], ...]
    cell_types: tuple[str, ...] = ()  # empty: all cell types
    diseases: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()
    tissues: tuple[str, ...] = ()
    data: str = "all"  # "all", "real" or "simulated" studies
    # disease terms (ids or labels) to rank at: each disease under one of them counts as that term
    # ("autoimmune disease" pools lupus, RA, MS, ...); empty: every disease on its own
    disease_groups: tuple[str, ...] = ()
    rule: HitRule = field(default_factory=HitRule)
    cell_min: int = 25
    samp_min: int = 3
    scale: str = "panel"  # "panel": values x the study's measured share (method.md 6); "raw": SIGnature's rows-to-1,000
    min_coverage: float = 0.5  # studies that measured less of the signature (by weight) are left out, with the reason
    n_null: int = 0  # random matched gene sets for the null (0: none; 1,000 or more for p-values)
    # larger selections: the null reruns on a per-sample stratified subsample (fewer cells for long
    # gene lists: see null_cell_budget)
    null_max_cells: int = 200_000
    evidence: bool = False  # robustness across thresholds, driver genes, drop-top-gene
    expression: bool = False  # also rank by scanpy.tl.score_genes on stored expression
    seed: int = 0
    # the donors each disease is compared with, within its own studies (method.md 7): a disease
    # term (id or label; its descendants count) or "normal" (PATO:0000461, healthy donors)
    reference: str = "normal"


@dataclass
class QueryResult:
    params: QueryParams
    resolution: GeneResolution
    scores: np.ndarray  # all cells
    selection: np.ndarray  # bool mask of cells in the filters
    threshold: float
    samples: pd.DataFrame
    diseases: pd.DataFrame
    studies: pd.DataFrame
    null: dict[str, NullResult] = field(default_factory=dict)  # by "disease" / "study"
    # per study: requested, measured, coverage, n_selected (cells in the filters), included, reason
    coverage: pd.DataFrame | None = None
    evidence: Evidence | None = None
    expression_scores: np.ndarray | None = None  # score_genes per cell (NaN outside the selection)
    expression_diseases: pd.DataFrame | None = None  # the disease ranking on expression scores, same rule
    # per (disease, study, measure): Hedges' g of the disease's donors against the study's own
    # reference donors (compute.query._meta.STUDY_COLUMNS); the pooled figures are columns of ``diseases``
    study_effects: pd.DataFrame | None = None
    expression_study_effects: pd.DataFrame | None = None
    reference_labels: tuple[str, ...] = ()  # the disease labels counted as the reference

    @property
    def n_selected(self) -> int:
        return int(self.selection.sum())

    @property
    def chance_pct(self) -> float:
        """The hit % a sample shows by chance: the share of all selected cells that are hits
        (score strictly above ``threshold``, as ``sample_hit_table`` counts them). The top 10%
        rule gives 10 only without ties: where most cells score 0 the 90th percentile is 0 and
        fewer cells pass it. NaN with no cell selected."""
        return hit_share(self.scores[self.selection], self.threshold)

    @property
    def excluded_studies(self) -> pd.DataFrame:
        """Studies with cells in the filters that were left out (coverage below ``min_coverage``), with the reason."""
        if self.coverage is None:
            return pd.DataFrame(columns=["requested", "measured", "coverage", "n_selected", "included", "reason"])
        c = self.coverage
        return c[(c["n_selected"] > 0) & ~c["included"]]


@dataclass
class Evidence:
    """How far a ranking can be trusted beyond its hit rates (method.md section 4)."""

    thresholds: pd.DataFrame  # group x percentile: mean sample hit % (NaN: not ranked there)
    ranks: pd.DataFrame  # group x percentile: rank
    rank_stability: float  # mean Spearman correlation of the group hit % between the percentiles and the query's rule
    gene_shares: pd.DataFrame  # genes x groups: % of the group's summed score carried by each gene
    top_gene: str | None
    without_top_gene: pd.DataFrame  # the disease ranking recomputed without ``top_gene``
    top_survives: bool | None  # the top disease is still first without its top gene
    # percentile -> the hit % a sample shows by chance there (QueryResult.chance_pct at that
    # percentile: below 100 - percentile where cells tie at the cut-off); None in results stored before it
    chance: pd.Series | None = None


def _filters(params: QueryParams) -> dict[str, list[str]]:
    pairs = (("cell_type", params.cell_types), ("disease", params.diseases), ("study", params.studies), ("tissue", params.tissues))
    out = {col: sorted(set(map(str, values))) for col, values in pairs if values}
    if params.data not in DATA_KINDS:
        raise QueryError(f"data must be one of {', '.join(DATA_KINDS)}, got '{params.data}'")
    if params.data != "all":
        out["simulated"] = [str(params.data == "simulated")]  # the cells column holds booleans
    return out


def selection_mask(atlas, params: QueryParams) -> np.ndarray:
    """The cells ``params`` select (Atlas.select: an ontology term includes its descendants;
    an unknown value raises QueryError naming it)."""
    if params.data not in DATA_KINDS:
        raise QueryError(f"data must be one of {', '.join(DATA_KINDS)}, got '{params.data}'")
    return atlas.select(cell_types=params.cell_types or None, diseases=params.diseases or None, tissues=params.tissues or None,
                        studies=params.studies or None, simulated=None if params.data == "all" else params.data == "simulated")


def query_cells(atlas, params: QueryParams) -> pd.DataFrame:
    """``atlas.cells`` as the query groups them: with ``params.disease_groups``, the disease
    column holds the group's term label for every disease under one of the groups
    (Atlas.disease_grouping); otherwise ``atlas.cells`` itself."""
    if not params.disease_groups:
        return atlas.cells
    mapping = atlas.disease_grouping(params.disease_groups)
    cells = atlas.cells.copy(deep=False)
    disease = cells["disease"].astype(str)
    cells["disease"] = disease.map(lambda d: mapping.get(d, d)).astype("category")
    return cells


def run_query(atlas, params: QueryParams, *, progress=None) -> QueryResult:
    """Answer ``params`` on ``atlas``: :func:`run_ranking` then :func:`add_evidence`. Raises
    QueryError for no matched gene or an empty selection.

    ``progress(fraction, message)``, when given, is called as the work advances (for the
    dashboard's progress bar); the null's draws report block by block."""
    result = run_ranking(atlas, params, progress=progress)
    return add_evidence(atlas, result, progress=progress)


def run_ranking(atlas, params: QueryParams, *, progress=None) -> QueryResult:
    """The first part of a query: genes resolved, cells scored, samples and groups ranked
    (``diseases``, ``studies``, ``coverage``), without the null, evidence or expression scores
    whatever ``params`` asks (see :func:`add_evidence`, which adds them to the same result). On
    the demo atlas a new MS1 query takes tens of milliseconds this way, so a caller can show the
    ranking first and the p-values after. Raises QueryError like :func:`run_query`."""
    report = progress or (lambda fraction, message: None)
    if not params.genes:
        raise QueryError("the gene list is empty: paste gene symbols or pick a preset")
    if len(params.genes) > MAX_GENES:
        raise QueryError(f"the gene list has {len(params.genes)} entries; at most {MAX_GENES} are accepted")
    if not 0 <= params.min_coverage <= 1:
        raise QueryError(f"min_coverage must be within 0-1, got {params.min_coverage}")
    res = atlas.resolve(list(params.genes))
    sel = selection_mask(atlas, params)
    if not sel.any():
        raise QueryError("no cells match the filters (cell types / diseases / studies / tissues): widen them")
    filters = _filters(params)
    report(0.05, "scoring cells")
    scores = atlas.score_resolved(res, mask=sel if filters else None, cache_key=filters if filters else None, scale=params.scale)
    coverage = study_coverage_table(atlas, res, sel, params.min_coverage)
    left_out = coverage.index[(coverage["n_selected"] > 0) & ~coverage["included"]]
    if len(left_out):
        dropped = np.zeros(atlas.n_cells, dtype=bool)
        gone = set(left_out)
        for st in atlas.studies:  # a study's cells are one block of rows
            if st.id in gone:
                dropped[st.offset : st.offset + st.n_cells] = True
        sel = sel & ~dropped
        scores = scores.copy()
        scores[dropped] = np.nan
        if not sel.any():
            raise QueryError(
                f"every selected study measured less than {params.min_coverage:.0%} of the signature "
                f"({'; '.join(f'{sid}: {c:.0%}' for sid, c in coverage.loc[left_out, 'coverage'].items())}): "
                "lower min_coverage or use genes these studies measured")
    thr = params.rule.threshold(scores[sel])
    cells = query_cells(atlas, params)
    samples = sample_hit_table(cells, scores, sel, thr)
    diseases = rank_groups(samples, "disease", params.cell_min, params.samp_min)
    studies = rank_groups(samples, "study", params.cell_min, 1)
    if len(studies):
        studies = studies.join(coverage[["measured", "requested", "coverage"]], on="group")
    reference = reference_labels(atlas, params, cells)
    diseases, study_effects = with_effects(diseases, samples, reference, params)
    return QueryResult(params, res, scores, sel, thr, samples, diseases, studies, coverage=coverage, study_effects=study_effects,
                       reference_labels=reference)


_HEALTHY_REFERENCE = frozenset({"normal", "healthy", "pato:0000461"})


def reference_labels(atlas, params: QueryParams, cells: pd.DataFrame) -> tuple[str, ...]:
    """The disease labels of ``cells`` (as the query groups them) that count as the reference:
    those under ``params.reference`` (an ontology term, id or label: its descendants count), or
    the labels equal to it (case aside) in an atlas without a vocabulary; none for the default
    "normal" in an atlas without healthy donors. Raises QueryError for another reference the
    atlas does not know."""
    ref = str(params.reference or "").strip()
    if not ref:
        raise QueryError("the reference must name a disease or 'normal'")
    remember = getattr(atlas, "remember", None)  # the walk of the disease terms costs ~10 ms: once per reference
    if remember is not None:
        return remember("reference_labels", (atlas.fingerprint, ref, tuple(params.disease_groups)),
                        lambda: _reference_labels(atlas, ref, params.disease_groups))
    return _reference_labels(atlas, ref, params.disease_groups)


def _reference_labels(atlas, ref: str, disease_groups) -> tuple[str, ...]:
    present = {str(d) for d in atlas.cells["disease"].astype(str).unique()}
    try:
        under = set(atlas.disease_grouping([ref]))
    except QueryError:
        under = set()
    under |= {d for d in present if d.casefold() == ref.casefold()}
    if not under and ref.casefold() in _HEALTHY_REFERENCE:
        return ()  # an atlas without healthy donors: every disease then says "no reference", no query fails
    if not under:
        raise QueryError(f"the reference '{ref}' is not a disease of this atlas or a term above one: pick one of "
                         f"{', '.join(sorted(present)[:12])}{' ...' if len(present) > 12 else ''}")
    if disease_groups:
        mapping = atlas.disease_grouping(disease_groups)
        under = {mapping.get(d, d) for d in under}
    return tuple(sorted(under))


def with_effects(table: pd.DataFrame, samples: pd.DataFrame, reference: tuple[str, ...], params: QueryParams):
    """(``table`` (a disease ranking) with the meta-analysis columns joined on its groups, the
    per-study effects) for the per-sample table ``samples`` (method.md section 7)."""
    meta: MetaAnalysis = meta_analyse(donor_table(samples, params.cell_min), table["group"].astype(str).tolist(), reference,
                                      seed=params.seed)
    return table.join(meta.diseases, on="group"), meta.studies


def add_evidence(atlas, result: QueryResult, *, progress=None) -> QueryResult:
    """Complete ``result`` (from :func:`run_ranking`) with what its ``params`` ask beyond the
    ranking: the null (``n_null`` draws: p-values and null band), the evidence (robustness,
    driver genes) and the expression ranking, computed from the same scores and selection.
    Fills those fields of ``result`` and returns it; parts already present are kept."""
    report = progress or (lambda fraction, message: None)
    params = result.params
    res, sel = result.resolution, result.selection
    if params.n_null > 0 and not result.null:
        report(0.15, f"null: {params.n_null:,} matched random gene sets")
        result.null = _null(atlas, result, _filters(params),
                            lambda f: report(0.15 + 0.7 * f, f"null: {int(f * params.n_null):,} of {params.n_null:,} gene sets"))
    if params.evidence and result.evidence is None:
        report(0.86, "robustness and driver genes")
        result.evidence = _evidence(atlas, result)
    if params.expression and result.expression_scores is None:
        report(0.93, "expression scores")
        expr = expression_scores(atlas, res.matched, sel, seed=params.seed)
        result.expression_scores = expr
        # a fixed cut-off is on the attribution scale: expression scores use the default percentile instead
        cut = params.rule.threshold(expr[sel]) if params.rule.kind != "value" else HitRule().threshold(expr[sel])
        expr_samples = sample_hit_table(query_cells(atlas, params), expr, sel, cut)
        result.expression_diseases, result.expression_study_effects = with_effects(
            rank_groups(expr_samples, "disease", params.cell_min, params.samp_min), expr_samples, result.reference_labels, params)
    return result


def study_coverage_table(atlas, res: GeneResolution, selection: np.ndarray, min_coverage: float) -> pd.DataFrame:
    """Per study (index): requested, measured, coverage (of the signature's weight), n_selected
    (cells in the filters), included (coverage >= ``min_coverage``) and the reason when not."""
    cov = atlas.coverage_resolved(res)
    counts = atlas.study_cell_counts(selection)
    cov["n_selected"] = counts.reindex(cov.index).fillna(0).astype(int)
    cov["included"] = (cov["coverage"] >= min_coverage - 1e-12) & (cov["measured"] > 0)
    cov["reason"] = [
        "" if ok else f"measured {m} of the {r} signature genes ({c:.0%} of the weight), below min_coverage {min_coverage:.0%}"
        for ok, m, r, c in zip(cov["included"], cov["measured"], cov["requested"], cov["coverage"], strict=True)
    ]
    return cov


def _selection_key(atlas, selection: np.ndarray, filters: dict | None, tag) -> tuple:
    return (atlas.fingerprint, tuple(sorted((filters or {}).items())) if filters else None, int(selection.sum()), tag)


def selection_matrix(atlas, selection: np.ndarray, filters: dict | None = None, tag=None) -> sp.csc_matrix:
    """Selected cells x genes attributions in memory (CSC), kept on the atlas for the last
    selection (``filters`` and ``tag`` name it; read one study at a time)."""
    key = _selection_key(atlas, selection, filters, tag)

    def build():
        parts = [atlas.store(s.id).rows(selection[s.offset : s.offset + s.n_cells]) for s in atlas.studies
                 if selection[s.offset : s.offset + s.n_cells].any()]
        return sp.vstack(parts, format="csc") if parts else sp.csc_matrix((0, len(atlas.genes)), dtype=np.float32)

    return atlas.remember("selection_matrix", key, build)


def _sample_layout(result: QueryResult, cells: pd.DataFrame):
    """Per selected cell its row in ``result.samples``; per sample its group index for each ranking."""
    sel = result.selection
    keys = pd.DataFrame({c: cells[c].to_numpy()[sel].astype(str) for c in ("study", "sample", "disease")})
    codes = keys.groupby(["study", "sample", "disease"], sort=True).ngroup().to_numpy()
    samples = result.samples
    kept = (samples["n_cells"] >= result.params.cell_min).to_numpy()
    groups = {}
    for by, table in (("disease", result.diseases), ("study", result.studies)):
        index = {g: i for i, g in enumerate(table["group"].astype(str))}
        groups[by] = np.array([index.get(g, -1) for g in samples[by].astype(str)], dtype=np.int64)
    return codes, kept, groups


def selection_gene_stats(atlas, selection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean attribution, detection rate) per gene over the selected cells, one study at a time."""
    sums, counts = np.zeros(len(atlas.genes)), np.zeros(len(atlas.genes))
    for s in atlas.studies:
        rows = selection[s.offset : s.offset + s.n_cells]
        if rows.any():
            a, b = atlas.store(s.id).gene_totals(rows)
            sums += a
            counts += b
    n = max(int(selection.sum()), 1)
    return sums / n, counts / n


def stratified_subsample(codes: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask over cells keeping ceil(fraction x n) random cells of every group in
    ``codes`` (at least one), so every sample keeps its share."""
    rng = np.random.default_rng(seed)
    n = codes.size
    if fraction >= 1 or n == 0:
        return np.ones(n, dtype=bool)
    order = np.lexsort((rng.random(n), codes))  # random order within each group
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, sizes)
    return rank < np.ceil(fraction * sizes)[codes]


# the null's work: stored values added over all draws (about 2.5 ns each on one core). A null
# that would add more runs on a per-sample stratified subsample of the cells (at most
# QueryParams.null_max_cells either way): MS1 with 1,000 draws keeps all of the demo's 31,094
# scored cells (3e8 values); a 5,000-gene list on the demo (half of it in the atlas: 9e9 values
# with every cell) keeps about 3,300 cells, so it answers in seconds, not a minute
NULL_MAX_VALUES = 1e9


def null_cell_budget(max_cells: int, values_per_cell: float, n_draws: int) -> int:
    """The most cells the null scores: ``max_cells``, fewer when ``values_per_cell`` (the stored
    values a cell holds over the signature's genes, which the matched draws share on average)
    times ``n_draws`` times the cells would exceed NULL_MAX_VALUES."""
    per_cell = max(values_per_cell, 1e-9) * max(n_draws, 1)
    return int(min(max_cells, max(NULL_MAX_VALUES // per_cell, 1000)))


def selection_rows(atlas, selection: np.ndarray, filters: dict | None = None, tag=None, scale: str = "panel") -> sp.csr_matrix:
    """Selected cells x genes attributions in memory as CSR (cell-major: the null walks it cell by
    cell), kept on the atlas for the last selection like :func:`selection_matrix`. On the panel
    ``scale`` a study calibrated gene by gene (Atlas.gene_scale) has its values multiplied by
    its gene factors here (its share in :func:`selection_panels` is then 1); the other studies'
    values are as stored and their share applies to the sums."""
    def build():
        parts = []
        for s in atlas.studies:
            rows = selection[s.offset : s.offset + s.n_cells]
            if not rows.any():
                continue
            part = atlas.store(s.id).rows(rows).tocsr()  # new arrays (CSC to CSR): scaled in place below
            gene_scale = atlas.gene_scale(s.id) if scale == "panel" else None
            if gene_scale is not None:
                part.data *= gene_scale[part.indices].astype(np.float32)
            parts.append(part)
        return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, len(atlas.genes)), dtype=np.float32)

    return atlas.remember("selection_rows", (*_selection_key(atlas, selection, filters, tag), scale), build)


def _row_gene_stats(R: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(mean, detection rate) per gene of a cells x genes CSR matrix."""
    from compute.query._null_kernel import column_totals

    n = max(R.shape[0], 1)
    sums, counts = column_totals(R.indices, R.data, R.shape[1])
    return sums / n, counts / n


def _null(atlas, result: QueryResult, filters: dict, progress=None) -> dict[str, NullResult]:
    params = result.params
    # before the selection's gene statistics are read: a signature of most of the atlas's genes
    # leaves too few to draw from, and the error says so at once
    check_draw_pool(np.asarray(result.resolution.indices, dtype=np.int64), len(atlas.genes))
    n_selected = int(result.selection.sum())
    if n_selected <= params.null_max_cells:
        # the null runs on the whole selection: its matrix gives the gene statistics too
        mean, detection = _row_gene_stats(selection_rows(atlas, result.selection, filters, tag="whole", scale=params.scale))
    else:
        mean, detection = selection_gene_stats(atlas, result.selection)
    signature = np.asarray(result.resolution.indices, dtype=np.int64)
    panels = selection_panels(atlas, result.selection, params.scale)
    draws = matched_draws(signature, gene_bins(mean, detection), params.n_null, seed=params.seed,
                          allowed=_allowed_genes(signature, panels.measured), stats=(mean, detection))
    rule = params.rule
    quantile = rule.quantile
    codes, kept, groups = _sample_layout(result, query_cells(atlas, params))
    n_sel = codes.size
    null_sel = result.selection
    max_cells = null_cell_budget(params.null_max_cells, float(detection[signature].sum()), params.n_null)
    if n_sel > max_cells:
        keep = stratified_subsample(codes, max_cells / n_sel, seed=params.seed)
        null_sel = result.selection.copy()
        null_sel[np.flatnonzero(result.selection)[~keep]] = False
        codes = codes[keep]
    # the whole selection is one matrix whatever the seed; a subsample depends on it
    tag = "whole" if null_sel is result.selection else ("subsample", max_cells, params.seed)
    M = selection_rows(atlas, null_sel, filters, tag=tag, scale=params.scale)
    if null_sel is not result.selection:
        panels = selection_panels(atlas, null_sel, params.scale)
    nulls = null_rankings(M, draws, np.asarray(result.resolution.weights), quantile, rule.value if rule.kind == "value" else None,
                          codes, groups, kept, progress=progress, panels=panels)
    # the correlation among the signature's genes against the random sets' (CAMERA's variance
    # inflation factor): the null's spread around its median is scaled by the square root of
    # their ratio, wider for a set more correlated than the draws, narrower for one less
    # (compute/query/_vif.py; never widening made the null conservative: docs/validation.md)
    vif, vif_null = variance_inflation(M, signature, draws)
    ok = np.isfinite(vif) and np.isfinite(vif_null)
    inflation = float(np.sqrt(max(vif, 1e-3) / max(vif_null, 1e-3))) if ok else 1.0
    out = {}
    floor = 1.0 / (result.params.n_null + 1)
    columns = ["group", "observed", "null_median", "null_lo", "null_hi", "p_value", "p_value_uncorrected", "p_value_plain"]
    for by, table in (("disease", result.diseases), ("study", result.studies)):
        dist = nulls[by]  # draws x groups
        obs = table["mean_hit_pct"].to_numpy(dtype=np.float64)
        if dist.size == 0 or obs.size == 0:
            out[by] = NullResult(pd.DataFrame(columns=columns), result.params.n_null, floor, NULL_BAND, n_cells=int(M.shape[0]),
                                 vif=vif, vif_null=vif_null, inflation=inflation)
            continue
        groups = table["group"].astype(str).to_numpy()
        ref = np.isin(groups, list(result.reference_labels)) if by == "disease" else np.zeros(groups.size, dtype=bool)
        # a disease's hit % against the reference's, draw by draw: the hit rule is a percentile of
        # all selected cells, so a draw carrying another disease's program lowers every other
        # group's hit % at once; that shift is no evidence about this signature and cancels here
        # (without it the null called 9% of no-effect sets at 0.05: docs/validation.md)
        shift, obs_shift = (dist[:, ref].mean(axis=1), float(obs[ref].mean())) if ref.any() else (np.zeros(dist.shape[0]), 0.0)
        centred, obs_c = dist - shift[:, None], obs - obs_shift
        median = np.median(centred, axis=0)
        wide = median[None, :] + (centred - median[None, :]) * inflation

        def p_of(null, observed):
            return (1 + (null >= observed[None, :] - 1e-12).sum(axis=0)) / (null.shape[0] + 1)

        p, p_unc = p_of(wide, obs_c), p_of(centred, obs_c)
        p[ref], p_unc[ref] = np.nan, np.nan  # the reference against itself: no question
        frame = pd.DataFrame({
            "group": table["group"].to_numpy(), "observed": obs, "null_median": obs_shift + median,
            "null_lo": obs_shift + np.percentile(wide, NULL_BAND[0], axis=0),
            "null_hi": obs_shift + np.percentile(wide, NULL_BAND[1], axis=0),
            "p_value": p, "p_value_uncorrected": p_unc, "p_value_plain": p_of(dist, obs),
        })
        out[by] = NullResult(frame, result.params.n_null, floor, NULL_BAND, n_cells=int(M.shape[0]), vif=vif, vif_null=vif_null,
                             inflation=inflation, relative_to=tuple(groups[ref]))
    return out


def selection_panels(atlas, selection: np.ndarray, scale: str = "panel") -> Panels:
    """The study panels of the selected cells (their study, what it measured, its share; 1 for
    ``scale="raw"``)."""
    chosen = [(s, int(selection[s.offset : s.offset + s.n_cells].sum())) for s in atlas.studies]
    chosen = [(s, n) for s, n in chosen if n]
    study_ids = [s.id for s, _ in chosen]
    measured = np.array([atlas.measured_mask(sid) for sid in study_ids], dtype=bool).reshape(len(study_ids), len(atlas.genes))
    # a study's cells are one block of rows, in atlas order: the selected cells' study codes follow
    cell_study = np.repeat(np.arange(len(chosen), dtype=np.int64), [n for _, n in chosen])
    # a study calibrated gene by gene has its factors in selection_rows' values: its share here is 1
    shares = [(1.0 if atlas.gene_scale(sid) is not None else atlas.panel_share(sid)) if scale == "panel" else 1.0 for sid in study_ids]
    return Panels(cell_study, measured, np.array(shares, dtype=np.float64))


def _allowed_genes(signature: np.ndarray, measured: np.ndarray) -> list[np.ndarray]:
    """Per signature gene: the genes measured in every selected study that measured it, so each
    random gene set covers every study as the signature does (one mask per panel pattern)."""
    out, memo = [], {}
    for g in signature.tolist():
        pattern = measured[:, g]
        key = pattern.tobytes()
        if key not in memo:
            memo[key] = measured[pattern].all(axis=0) if pattern.any() else np.ones(measured.shape[1], dtype=bool)
        out.append(memo[key])
    return out


def signature_matrix(atlas, result: QueryResult) -> sp.csr_matrix:
    """Selected cells x matched signature genes (only those columns are read)."""
    idx = np.asarray(result.resolution.indices, dtype=np.int64)
    parts = []
    for s in atlas.studies:
        rows = result.selection[s.offset : s.offset + s.n_cells]
        if rows.any():
            parts.append(atlas.store(s.id).gather(idx).tocsr()[np.flatnonzero(rows)])
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, idx.size), dtype=np.float32)


def _evidence(atlas, result: QueryResult) -> Evidence:
    params = result.params
    cells = query_cells(atlas, params)
    scores_sel = result.scores[result.selection]
    full = result.scores.copy()
    hit_pct, ranks, chance = {}, {}, {}
    for pct in ROBUSTNESS_PERCENTILES:
        thr = float(np.quantile(scores_sel, pct / 100))
        chance[pct] = hit_share(scores_sel, thr)
        table = rank_groups(sample_hit_table(cells, full, result.selection, thr), "disease", params.cell_min, params.samp_min)
        hit_pct[pct] = table.set_index("group")["mean_hit_pct"]
        ranks[pct] = table.set_index("group")["rank"]
    thresholds, rank_table = pd.DataFrame(hit_pct), pd.DataFrame(ranks)
    base = result.diseases.set_index("group")["mean_hit_pct"]
    cors = []
    for pct in ROBUSTNESS_PERCENTILES:
        both = pd.concat([base, thresholds[pct]], axis=1).dropna()
        if len(both) >= 3:
            cors.append(both.rank().corr().iloc[0, 1])
    stability = float(np.nanmean(cors)) if cors else float("nan")

    idx = np.asarray(result.resolution.indices, dtype=np.int64)
    w = np.asarray(result.resolution.weights, dtype=np.float64)
    sub = signature_matrix(atlas, result)
    labels = cells["disease"].to_numpy()[result.selection].astype(str)
    groups = list(result.diseases["group"].astype(str))
    shares = pd.DataFrame(index=list(result.resolution.matched), columns=groups, dtype=float)
    for gname in groups:
        rows = labels == gname
        contrib = np.asarray(sub[rows].sum(axis=0)).ravel() * w
        total = contrib.sum()
        shares[gname] = 100.0 * contrib / total if total > 0 else 0.0

    top_gene, without, survives = None, pd.DataFrame(), None
    if groups and len(idx) > 1:
        top_gene = str(shares[groups[0]].idxmax())
        keep = np.array([g != top_gene for g in result.resolution.matched])
        panels = selection_panels(atlas, result.selection, params.scale)
        D = sp.csc_matrix((w[keep], (idx[keep], np.zeros(int(keep.sum()), dtype=np.int64))), shape=(len(atlas.genes), 1))
        reduced = panels.rescale(np.asarray(sub[:, keep] @ w[keep]).reshape(-1, 1), D).ravel()
        full[result.selection] = reduced
        thr = params.rule.threshold(reduced)
        without = rank_groups(sample_hit_table(cells, full, result.selection, thr), "disease", params.cell_min, params.samp_min)
        survives = bool(len(without) and without["group"].iloc[0] == groups[0])
    return Evidence(thresholds, rank_table, stability, shares, top_gene, without, survives, chance=pd.Series(chance, dtype=float))

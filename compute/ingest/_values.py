"""What a study's matrix holds (``source.values``) and how it becomes pseudo-counts.

SigAtlas normalises counts (method.md section 1). Other inputs are turned into pseudo-counts
that the same normalisation (per cell to 10,000, then log1p) accepts:

- ``counts``: integers >= 0, from X, else from ``.raw``; used as they are.
- ``tpm`` / ``fpkm``: values >= 0 on a linear scale; each cell is rescaled to sum to 10,000.
  An approximation: gene-length units are not counts.
- ``lognorm``: log1p of per-cell normalised counts, from X or ``.raw``; pseudo-counts are
  ``expm1`` of the values. Accepted when one of two checks holds (see
  :func:`lognorm_check`); anything else cannot be told apart from log-scaled TPM or
  arbitrary transforms, whose ``expm1`` is not proportional to expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from compute.errors import IngestError

__all__ = ["LOGNORM_SPREAD", "PseudoCounts", "describe_values", "lognorm_check", "pseudo_counts", "refuse_non_finite"]

# log-normalised rows: expm1 row sums may differ by at most 1% (max/min) ...
LOGNORM_SPREAD = 1.01
# ... or every cell's expm1 values are whole multiples of its smallest one (counts scaled per
# cell, normalised over more genes than the file keeps, as in scanpy's pbmc68k_reduced).
# Only multiples up to 20 are judged (above that, rounding of stored values hides whether a
# ratio is whole); they must be at least half of the values, and 99% of them whole within
# 0.02 + 0.2% of the ratio (pbmc68k's .raw is stored to 3 decimals: its largest miss is 1.2%).
_MULTIPLE_MAX = 20.0
_MULTIPLE_JUDGED = 0.5
_MULTIPLE_WHOLE = 0.99
# largest value of data on a log scale: log1p(1e8) is 18.4
_LOG_SCALE_MAX = 20.0
TPM_NOTE = "approximation: TPM/FPKM rescaled per cell to 10,000, not counts"
LOGNORM_NOTE = "pseudo-counts = expm1 of log-normalised values; library sizes were already divided out"


@dataclass(frozen=True)
class PseudoCounts:
    """A study's matrix as pseudo-counts (CSR float32, cells x genes) with the var table of
    the slot it came from and the report's ``values`` section."""

    X: sp.csr_matrix
    var: object
    report: dict


def _csr(m) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float64)
    out.eliminate_zeros()
    return out


def _is_counts(m: sp.csr_matrix) -> bool:
    # inf == rint(inf): without the finiteness check an Inf would pass as a count
    return bool(np.all(np.isfinite(m.data)) and np.all(m.data >= 0) and np.all(m.data == np.rint(m.data)))


def refuse_non_finite(m: sp.csr_matrix, slot: str, var, obs_names, where: str) -> None:
    """Raise IngestError when ``m`` (the CSR of ``slot``, "X" or ".raw") holds NaN or Inf,
    naming how many and the first cell and gene. A missing value is no count, TPM or log value:
    normalising a cell that holds one turns all of its values into NaN."""
    bad = ~np.isfinite(m.data)
    if not bad.any():
        return
    n_nan = int(np.isnan(m.data).sum())
    n_inf = int(bad.sum()) - n_nan
    what = " and ".join(f"{n:,} {name}" for n, name in ((n_nan, "NaN"), (n_inf, "Inf")) if n)
    first = int(np.flatnonzero(bad)[0])
    row = int(np.searchsorted(m.indptr, first, side="right")) - 1
    cell = str(obs_names[row]) if obs_names is not None and row < len(obs_names) else f"row {row}"
    gene = str(var.index[m.indices[first]]) if var is not None else f"column {m.indices[first]}"
    n_cells = int(np.unique(np.searchsorted(m.indptr, np.flatnonzero(bad), side="right")).size)
    raise IngestError(
        f"{where}: {slot} holds {what} value(s) in {n_cells:,} cell(s) (the first in cell '{cell}', gene '{gene}'): "
        "every value must be a finite number, whatever source.values says. Replace them in the file "
        "(0 where nothing was detected; drop cells or genes that were not measured) and re-run."
    )


def _row_sums(m: sp.csr_matrix) -> np.ndarray:
    return np.asarray(m.sum(axis=1)).ravel()


def lognorm_check(m) -> tuple[bool, str]:
    """(accepted, what was seen) for values claimed to be log1p of per-cell normalised counts.

    Accepted when every non-empty cell's ``expm1`` values sum to one library size within
    ``LOGNORM_SPREAD`` (max/min of the row sums <= 1.01), or when in every cell the
    ``expm1`` values are whole multiples of the cell's smallest value (counts scaled per
    cell; the file keeps fewer genes than were normalised over). The text gives the observed
    range of row sums.
    """
    m = _csr(m)
    if m.nnz == 0:
        return False, "the matrix is all zeros"
    if m.data.min() < 0:
        return False, f"it has negative values (smallest {m.data.min():.3g})"
    if m.data.max() >= _LOG_SCALE_MAX:
        return False, f"values reach {m.data.max():,.6g}, too large for log1p of normalised counts"
    e = m.copy()
    e.data = np.expm1(e.data)
    sums = _row_sums(e)
    sums = sums[sums > 0]
    lo, hi = float(sums.min()), float(sums.max())
    seen = f"expm1 row sums range from {lo:,.1f} to {hi:,.1f}, max/min {hi / lo:.3g}"
    if hi / lo <= LOGNORM_SPREAD:
        return True, f"{seen}: one library size of about {np.median(sums):,.0f} per cell"
    counts = np.diff(e.indptr)
    nonempty = counts > 0
    mins = np.zeros(len(counts))
    mins[nonempty] = np.minimum.reduceat(e.data, e.indptr[:-1][nonempty])
    ratio = e.data / np.repeat(mins, counts)
    judged = ratio <= _MULTIPLE_MAX
    whole = np.abs(ratio[judged] - np.rint(ratio[judged])) <= 0.02 + 0.002 * ratio[judged]
    if judged.mean() >= _MULTIPLE_JUDGED and whole.mean() >= _MULTIPLE_WHOLE:
        return True, f"{seen}; each cell's expm1 values are whole multiples of its smallest: counts scaled per cell"
    return False, seen


def describe_values(m) -> tuple[str, str]:
    """(kind, description) of a matrix: kind is 'scaled', 'counts', 'lognorm', 'log', 'tpm'
    or 'linear'; the description says what was seen, for error messages."""
    m = _csr(m)
    if m.nnz == 0:
        return "empty", "only zeros"
    if m.data.min() < 0:
        return "scaled", f"negative values (smallest {m.data.min():.3g}: scaled or centred data, e.g. after sc.pp.scale)"
    if _is_counts(m):
        return "counts", "integer counts"
    ok, seen = lognorm_check(m)
    if ok:
        return "lognorm", f"log-normalised values ({seen})"
    top = float(m.data.max())
    if top < _LOG_SCALE_MAX:
        return "log", f"values on a log scale (largest {top:.3g}) that are not log1p of per-cell normalised counts ({seen})"
    sums = _row_sums(m)
    sums = sums[sums > 0]
    lo, med, hi = float(sums.min()), float(np.median(sums)), float(sums.max())
    spread = f"each cell sums to between {lo:,.0f} and {hi:,.0f}, median {med:,.0f}"
    if 0.9e6 <= med <= 1.1e6:
        return "tpm", f"non-integer values that look like TPM ({spread}; TPM sums to about 1,000,000)"
    return "linear", f"non-integer values on a linear scale, like FPKM or TPM ({spread})"


# what to do about a matrix of each kind, when it is not what source.values says
_ADVICE = {
    "lognorm": "If they are log-normalised, set source.values: lognorm in the manifest.",
    "tpm": "If they are TPM, set source.values: tpm in the manifest.",
    "linear": "If they are FPKM (or TPM), set source.values: fpkm (or tpm) in the manifest.",
    "log": "Undo the log transform (e.g. 2**x - 1 for log2(x + 1)) and set source.values: tpm | fpkm.",
}
_OPTIONS = "source.values: tpm | fpkm | lognorm"


def _raw_text(adata) -> tuple[str, str | None]:
    if adata.raw is None:
        return "there is no .raw", None
    kind, desc = describe_values(adata.raw.X)
    return f".raw holds {desc}", kind


def _counts(adata, where: str) -> PseudoCounts:
    X = _csr(adata.X)
    if _is_counts(X):
        return PseudoCounts(X, adata.var, {"kind": "counts", "source": "X", "note": "raw counts"})
    if adata.raw is not None:
        R = _csr(adata.raw.X)
        if _is_counts(R):
            return PseudoCounts(R, adata.raw.var, {"kind": "counts", "source": ".raw", "note": "raw counts from .raw (X was not counts)"})
    # no slot holds counts: a NaN or Inf is the problem to name, not the kind of values around it
    refuse_non_finite(X, "X", adata.var, adata.obs_names, where)
    if adata.raw is not None:
        refuse_non_finite(_csr(adata.raw.X), ".raw", adata.raw.var, adata.obs_names, where)
    x_kind, x_desc = describe_values(X)
    raw_desc, raw_kind = _raw_text(adata)
    if x_kind == "scaled":
        if raw_kind == "lognorm":
            fix = "Set source.values: lognorm to use .raw (SigAtlas then normalises expm1(.raw) per cell), or store the counts in .raw.X."
        elif raw_kind in ("tpm", "linear"):
            fix = _ADVICE[raw_kind].replace("If they are", "If .raw holds") + " Or store the counts in .raw.X."
        else:
            fix = f"Store the counts in X or .raw.X, or TPM/FPKM or log-normalised values with {_OPTIONS}."
        raise IngestError(
            f"{where}: source.values is 'counts' but X holds {x_desc}, which cannot be turned back into "
            f"counts, and {raw_desc}. {fix}"
        )
    no_raw = "there is no .raw" if adata.raw is None else f"{raw_desc}, not counts"
    fix = _ADVICE.get(x_kind, "")
    raise IngestError(
        f"{where}: source.values is 'counts' (the default) but X holds non-integer values and {no_raw}. "
        f"X holds {x_desc}. {fix} SigAtlas reads raw counts from X or .raw.X; other inputs need {_OPTIONS}."
    )


def _linear(adata, kind: str, where: str) -> PseudoCounts:
    refusals = []
    slots = [("X", adata.X, adata.var)]
    if adata.raw is not None:
        slots.append((".raw", adata.raw.X, adata.raw.var))
    for name, m, var in slots:
        m = _csr(m)
        refuse_non_finite(m, name, var, adata.obs_names, where)
        if m.nnz == 0:
            refusals.append(f"{name} holds only zeros")
            continue
        if m.data.min() < 0:
            refusals.append(f"{name} holds negative values (smallest {m.data.min():.3g})")
            continue
        top = float(m.data.max())
        if top < _LOG_SCALE_MAX:
            refusals.append(f"{name} looks log-transformed (largest value {top:.3g}; {kind.upper()} reaches far higher)")
            continue
        sums = _row_sums(m)
        scale = np.divide(1e4, sums, out=np.zeros_like(sums), where=sums > 0)
        pseudo = sp.csr_matrix(sp.diags(scale) @ m)
        report = {
            "kind": kind,
            "source": name,
            "note": TPM_NOTE,
            "row_sums": {"min": round(float(sums.min()), 1), "median": round(float(np.median(sums)), 1),
                         "max": round(float(sums.max()), 1)},
        }
        if _is_counts(m):
            report["warning"] = f"{name} holds integers: if they are counts, source.values: counts is exact"
        return PseudoCounts(pseudo, var, report)
    raise IngestError(
        f"{where}: source.values is '{kind}' but no slot holds {kind.upper()} on a linear scale: "
        f"{'; '.join(refusals)}. Store {kind.upper()} values (>= 0, not log-transformed) in X "
        "(undo a log first, e.g. 2**x - 1 for log2(x + 1)), or set source.values: lognorm | counts to match the data."
    )


def _lognorm(adata, where: str) -> PseudoCounts:
    slots = [("X", adata.X, adata.var)]
    if adata.raw is not None:
        slots.append((".raw", adata.raw.X, adata.raw.var))
    seen = []
    for name, m, var in slots:
        m = _csr(m)
        refuse_non_finite(m, name, var, adata.obs_names, where)
        ok, what = lognorm_check(m)
        if ok:
            pseudo = m.copy()
            pseudo.data = np.expm1(pseudo.data)
            return PseudoCounts(pseudo, var, {"kind": "lognorm", "source": name, "note": LOGNORM_NOTE, "check": what})
        hint = " (integers: if they are counts, set source.values: counts)" if m.nnz and _is_counts(m) else ""
        seen.append(f"{name}: {what}{hint}")
    raise IngestError(
        f"{where}: source.values is 'lognorm' but neither X nor .raw holds log1p of per-cell normalised "
        f"counts ({'; '.join(seen)}; accepted: row sums within {100 * (LOGNORM_SPREAD - 1):.0f}% of each "
        "other, or each cell's expm1 values whole multiples of its smallest). Store counts (source.values: "
        "counts), TPM/FPKM (source.values: tpm | fpkm), or scanpy's normalize_total + log1p of the counts "
        "over all genes."
    )


def pseudo_counts(adata, values: str, where: str) -> PseudoCounts:
    """The study's matrix as pseudo-counts for ``values`` (a :data:`compute.manifest.VALUE_KINDS`
    entry). Raises IngestError naming what X and .raw hold and the ``source.values`` to set."""
    if values == "counts":
        return _counts(adata, where)
    if values in ("tpm", "fpkm"):
        return _linear(adata, values, where)
    if values == "lognorm":
        return _lognorm(adata, where)
    raise IngestError(f"{where}: unknown source.values '{values}'; use counts, tpm, fpkm or lognorm")

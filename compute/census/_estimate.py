"""Disk and time a census build will need, estimated from the plan's cell counts (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from compute.manifest import AttributionSpec, ModelSpec

__all__ = ["Estimate", "estimate"]

# Each stored value (a non-zero count) as TileDB returns it: two int64 coordinates and a float32.
# What goes over the network is compressed tiles (smaller), but whole tiles are fetched (larger):
# an order-of-magnitude guide, not a promise.
TRANSFER_BYTES_PER_VALUE = 20
# A CSR matrix in an h5ad (anndata writes it uncompressed): a float32 value and an int32 index.
FILE_BYTES_PER_VALUE = 8
# obs columns, indptr and var per cell in the downloaded and ingested files
FILE_BYTES_PER_CELL = 200
# per file: HDF5's own structure, and var (Ensembl id and symbol) per gene the dataset measured
FILE_BYTES_PER_DATASET = 100_000
FILE_BYTES_PER_GENE = 60
# When the Census has no obs nnz column: a droplet cell's typical number of detected genes.
TYPICAL_VALUES_PER_CELL = 2000
# Build throughput measured by `python -m compute bench build` (docs/benchmarks/build-cpu.txt):
# 1,000,000 cells of 2,000 genes on 2 CPU cores, encoder [256, 128] -> 64 (552,960 weights), 1 epoch,
# 20 IG steps: training 135 s, attributions and embeddings 128 s, the other stages (ingest, UMAP,
# writing) 245 s. Training scales with cells x epochs x weights, attributions with cells x steps x
# weights, the rest with cells.
_BENCH_WEIGHTS = 2000 * 256 + 256 * 128 + 128 * 64
_TRAIN_S = 135e-6
_ATTR_S = 128e-6
_BENCH_STEPS = 20
_OTHER_S = 245e-6
# start-up whatever the size: imports, the Dask cluster, the model's first steps
_FIXED_S = 30.0


@dataclass(frozen=True)
class Estimate:
    """Bytes and seconds a census build needs: ``download_bytes`` over the network;
    ``disk_bytes`` by place (downloads, work folder, atlas); ``download_s`` at
    ``bandwidth_mb_s``; ``build_s`` on 2 CPU cores; ``how`` says how each was estimated."""

    cells: int
    values: int
    values_known: bool
    genes: int
    download_bytes: int
    disk_bytes: dict[str, int]
    download_s: float
    build_s: float
    bandwidth_mb_s: float
    how: tuple[str, ...]

    @property
    def total_disk_bytes(self) -> int:
        return sum(self.disk_bytes.values())


def _weights(n_genes: int, model: ModelSpec) -> int:
    sizes = [n_genes, *model.hidden_sizes, model.latent_dim]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def estimate(cells: int, values: int | None, genes: int, model: ModelSpec, attribution: AttributionSpec,
             bandwidth_mb_s: float = 10.0, datasets: int = 1) -> Estimate:
    """The :class:`Estimate` for ``cells`` cells of ``datasets`` datasets holding ``values``
    stored values (None: unknown, taken as TYPICAL_VALUES_PER_CELL per cell) over ``genes``
    genes, built with ``model`` and ``attribution``, downloaded at ``bandwidth_mb_s`` MB/s."""
    known = values is not None
    nnz = int(values) if known else cells * TYPICAL_VALUES_PER_CELL
    matrix = nnz * FILE_BYTES_PER_VALUE
    per_cell_files = cells * FILE_BYTES_PER_CELL + datasets * (FILE_BYTES_PER_DATASET + genes * FILE_BYTES_PER_GENE)
    latent = model.latent_dim * 4
    disk = {
        "downloads": matrix + per_cell_files,
        # the ingested study (the same values after QC), attributions (IG from a zero baseline is
        # zero wherever the input is) and embeddings
        "work folder": 2 * matrix + per_cell_files + cells * latent,
        # expression and attribution stores, embedding, UMAP and the cells table
        "atlas": 2 * matrix + cells * (latent + 8 + FILE_BYTES_PER_CELL),
    }
    transfer = nnz * TRANSFER_BYTES_PER_VALUE
    w = _weights(max(genes, 1), model) if model.kind == "train" else _weights(max(genes, 1), ModelSpec())
    scale = w / _BENCH_WEIGHTS
    train = cells * _TRAIN_S * model.epochs * scale if model.kind == "train" else 0.0
    attr = cells * _ATTR_S * (attribution.n_steps / _BENCH_STEPS) * scale
    build = _FIXED_S + train + attr + cells * _OTHER_S
    how = (
        f"stored values: {'the Census obs nnz of the selected cells' if known else f'{TYPICAL_VALUES_PER_CELL:,} per cell (the Census has no obs nnz column)'}",
        f"download: {TRANSFER_BYTES_PER_VALUE} B per stored value (two int64 coordinates and a float32, as TileDB returns "
        "them; compressed tiles travel smaller, whole tiles are read): an order-of-magnitude guide",
        f"disk: {FILE_BYTES_PER_VALUE} B per stored value per copy (CSR float32 + int32 index) and ~{FILE_BYTES_PER_CELL} B "
        f"per cell, ~{FILE_BYTES_PER_DATASET // 1000} KB + {FILE_BYTES_PER_GENE} B per gene per file; downloads 1 copy, "
        "work folder 2 (ingested, attributions) + embeddings, atlas 2 (expression, attributions)",
        f"build: 2 CPU cores, from docs/benchmarks/build-cpu.txt (1M cells: training {_TRAIN_S * 1e6:.0f} s per epoch, "
        f"attributions {_ATTR_S * 1e6:.0f} s at {_BENCH_STEPS} steps, other stages {_OTHER_S * 1e6:.0f} s, with a "
        f"{_BENCH_WEIGHTS:,}-weight encoder), scaled by cells, epochs, IG steps and the encoder's {w:,} weights "
        f"over {genes:,} genes, plus ~{_FIXED_S:.0f} s of start-up; a GPU trains far faster",
    )
    return Estimate(cells=int(cells), values=nnz, values_known=known, genes=int(genes), download_bytes=transfer,
                    disk_bytes=disk, download_s=transfer / (bandwidth_mb_s * 1e6), build_s=build,
                    bandwidth_mb_s=float(bandwidth_mb_s), how=how)

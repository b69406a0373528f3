"""What checking derived files costs (issue 33): the consolidated store's checksums, verified once
per process when it is mapped, and a cached answer's checksum, verified at each read from disk.

    python docs/benchmarks/cache_verify.py --atlas atlas/demo [--repeat 5]

Uses a cache folder of its own (a temporary one); prints the medians."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--atlas", default="atlas/demo")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    import diskcache

    from compute.atlas import ATTR_PREFIX, Atlas, GeneMajorStore
    from compute.query import QueryParams
    from dashboard.data import DashboardData

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        atlas = Atlas.open(args.atlas, cache=cache)
        t0 = time.perf_counter()
        atlas.consolidated_store()
        made = time.perf_counter() - t0
        folder = cache / "consolidated"
        size = sum(f.stat().st_size for f in folder.glob("*.npy"))
        n_genes, n_cells = len(atlas.genes), atlas.n_cells
        stores = [atlas._store(s) for s in atlas.studies]  # noqa: SLF001 - a benchmark of the store's open

        from compute.atlas._store import consolidated_store

        checked = _median(lambda: consolidated_store(stores, folder, ATTR_PREFIX), args.repeat)
        mapped = _median(lambda: GeneMajorStore(folder, ATTR_PREFIX, n_genes, n_cells), args.repeat)
        print(f"consolidated store: {size / 1e6:.0f} MB, made in {made:.2f} s; opened with its checksums checked "
              f"{checked:.3f} s, mapped without (before issue 33) {mapped:.4f} s: +{checked - mapped:.3f} s once per process")

        import os

        os.environ["SIGATLAS_CACHE_DIR"] = str(cache)
        data = DashboardData(args.atlas)
        params = QueryParams(genes=tuple((g, None) for g in ("CD14", "LYZ", "S100A8", "S100A9", "FCN1", "VCAN")))
        key = data.result_key(params)
        result = data.query(params)
        results = data._results()  # noqa: SLF001
        with diskcache.Cache(str(results.directory)) as raw:
            stored = raw.get(key)
            raw.set("plain", result)  # how an answer was stored before: diskcache's own pickle
            plain = _median(lambda: raw.get("plain"), args.repeat * 10)
        checked_get = _median(lambda: results.get(key), args.repeat * 10)
        print(f"cached answer ({len(stored) / 1e3:.0f} kB): read with its checksum {checked_get * 1e3:.2f} ms, "
              f"diskcache's plain read {plain * 1e3:.2f} ms: +{(checked_get - plain) * 1e3:.2f} ms per read")


if __name__ == "__main__":
    main()

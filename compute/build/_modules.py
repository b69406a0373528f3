"""The build's gene-modules stage: the atlas's co-attribution modules (compute.genemodules) are
computed once, when the atlas is written, and stored in it, so that no request of the dashboard
ever computes them (about a minute on the demo). Kept in the build's work folder under a key of
the study files they were computed from, so a rebuild that changed nothing reuses them."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

__all__ = ["store_gene_modules"]


def _key(files: dict, params: dict) -> str:
    from compute.genemodules import MODULES_VERSION

    studies = {rel: rec.get("sha256") for rel, rec in sorted(files.items()) if rel.startswith("studies/")}
    text = json.dumps({"v": MODULES_VERSION, "params": params, "studies": studies}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def store_gene_modules(root: Path, work: Path, files: dict) -> tuple[dict, dict]:
    """Compute (or take from ``work``) the atlas's gene modules with the default parameters and
    write them into ``root``/gene_modules. ``root`` must already hold an atlas.json (its studies
    are read through compute.atlas.Atlas). Returns (the record for atlas.json's "gene_modules",
    the new files' records for its "files")."""
    from compute.atlas import Atlas
    from compute.files import copy_tree_atomic, file_record
    from compute.genemodules import (
        MODULES_DIR,
        default_params,
        gene_modules,
        read_gene_modules,
        write_gene_modules,
    )

    params = default_params()
    key = _key(files, params)
    cached = Path(work) / "gene_modules" / key
    t0 = time.perf_counter()
    if not (cached / "modules.json").is_file():
        atlas = Atlas.open(root, verify="none", cache=False)
        gm = gene_modules(atlas, use_cache=False)
        tmp = cached.with_name(key + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        write_gene_modules(gm, tmp)
        for old in cached.parent.glob("*"):  # one kept: the last
            if old != tmp:
                shutil.rmtree(old, ignore_errors=True)
        tmp.rename(cached)
    copy_tree_atomic(cached, root / MODULES_DIR)
    gm = read_gene_modules(root / MODULES_DIR)
    record = {"dir": MODULES_DIR, "params": params, "n_modules": int(len(gm.table)), "n_genes": len(gm.genes),
              "n_metacells": gm.n_metacells, "seconds": round(time.perf_counter() - t0, 2)}
    new_files = {f"{MODULES_DIR}/{p.name}": file_record(p) for p in sorted((root / MODULES_DIR).iterdir()) if p.is_file()}
    return record, new_files

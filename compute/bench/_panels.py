"""``python -m compute bench panels``: the real two-panel atlas (celltypist's 559 real cells on
their full panel and on PBMC 68k's 765 genes, plus PBMC 68k; compute.validate two_panel_manifest)
built without and with panel-aware training (model.panel_dropout and model.panel_consistency),
and with it and the embedding on every gene (embedding.genes: all; the first two take the
default, auto: here the genes every study measured), the same cells, seed and settings otherwise. For each it prints the encoder's training time, how
well the two copies of the same cells mix in the embedding (compute.integration on the two copies'
cells: the share of a cell's 15 nearest neighbours from the other copy, against perfect mixing),
the two-panel hit ratios per marker set on the panel scale (the whole atlas, and the held-out
check: factors from half of the full-panel cells, ratios on the other half), and the references
each partial-panel study was calibrated on. Real cells only; nothing simulated."""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PanelBenchConfig", "panel_figures", "run_panel_bench"]


@dataclass(frozen=True)
class PanelBenchConfig:
    epochs: int = 8
    panel_dropout: float = 0.5
    panel_consistency: float = 10.0
    threads: int = 1
    work: str = "/tmp/sigatlas-bench-panels"


def panel_figures(atlas) -> dict:
    """The figures of one built two-panel atlas: {training_s, mixing (IntegrationMetrics as a dict,
    the two copies' cells only), ratios {marker set: panel-scale hit ratio}, held_out {marker set:
    ratio}, references {study: its calibration's reference studies}}."""
    import numpy as np

    from compute.integration import integration_metrics
    from compute.validate import TWO_PANEL_IDS, held_out_ratios, two_panel_table

    card_file = atlas.path / "model" / "model_card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    study = atlas.cells["study"].astype(str).to_numpy()
    both = np.isin(study, list(TWO_PANEL_IDS))
    # both copies carry one label (PBMC): perfect mixing puts about half of a cell's neighbours in the other copy
    mixing = integration_metrics(atlas.embedding()[both], np.full(int(both.sum()), "PBMC", dtype=object), study[both])
    table = two_panel_table(atlas).set_index("marker set")
    with_single = held_out_ratios(atlas, min_genes=1)
    sets = held_out_ratios(atlas)
    return {"training_s": (card.get("training") or {}).get("seconds"), "mixing": mixing.as_dict(),
            "ratios": {k: round(float(v), 3) for k, v in table["attr panel: ratio"].items()},
            "held_out": {k: round(float(v), 3) for k, v in sets.items()},
            # sets the 765-gene panel leaves with one gene (Platelet: CXCR4): that gene's tail, not a set's
            "held_out_one_gene": {k: round(float(v), 3) for k, v in with_single.items() if k not in sets},
            "references": {e["id"]: (e["panel"].get("calibration") or {}).get("reference_studies")
                           for e in atlas.meta["studies"] if (e["panel"].get("calibration") or {})}}


def run_panel_bench(cfg: PanelBenchConfig = PanelBenchConfig(), json_path: str | None = None) -> dict:
    """Build the two atlases in ``cfg.work`` (ingest shared) and print their figures; returns them."""
    from compute.atlas import Atlas
    from compute.build import build_atlas
    from compute.manifest import load_manifest
    from compute.validate import two_panel_manifest

    os.environ["SIGATLAS_THREADS"] = str(cfg.threads)
    out: dict = {"config": asdict(cfg)}
    runs = (("before", 0.0, 0.0, "auto"), ("after", cfg.panel_dropout, cfg.panel_consistency, "auto"),
            ("after, embedding on every gene", cfg.panel_dropout, cfg.panel_consistency, "all"))
    for name, dropout, consistency, genes in runs:
        work = Path(cfg.work) / name.replace(", ", "-").replace(" ", "-")
        manifest = two_panel_manifest(work, epochs=cfg.epochs, panel_dropout=dropout, panel_consistency=consistency,
                                      embedding_genes=genes)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_atlas(load_manifest(manifest), scheduler="sync", quiet=True)
        figures = panel_figures(Atlas.open(work / "atlas", cache=False))
        figures.update(build_s=round(time.perf_counter() - t0, 1), panel_dropout=dropout, panel_consistency=consistency,
                       embedding_genes=genes)
        out[name] = figures
        m = figures["mixing"]
        print(f"{name}: panel_dropout {dropout}, panel_consistency {consistency}, embedding.genes {genes}; build {figures['build_s']} s, "
              f"training {figures['training_s']} s ({cfg.threads} thread)")
        print(f"  two copies of the same cells: cross-copy share of the 15 nearest neighbours {m['cross_study_share']:.3f} "
              f"of {m['perfect_share']:.3f} under perfect mixing = {m['mixing']:.2f} of perfect; iLISI {m['ilisi']:.2f}")
        print("  panel-scale hit ratio, whole atlas: " + ", ".join(f"{k} {v:.2f}" for k, v in figures["ratios"].items()))
        print("  held out (factors from the other half): " + ", ".join(f"{k} {v:.2f}" for k, v in figures["held_out"].items())
              + "".join(f"; {k}, one gene on the panel: {v:.2f}" for k, v in figures["held_out_one_gene"].items()))
        print("  calibrated on: " + "; ".join(f"{k}: {v}" for k, v in figures["references"].items()))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1))
    return out

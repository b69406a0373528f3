"""Simulated immune single-cell studies with planted gene programs (and the truth beside them).

Everything a user sees from these studies is labelled simulated: the h5ad ``uns``, the
manifest entries (``simulated: true``), the atlas and the dashboard.

Model, per study s, sample (donor) d, cell c and gene g:
    counts ~ NegativeBinomial(mean = L_c * p_cg, theta)
    L_c    ~ LogNormal(log(depth_s * mean_library_size), 0.35)   sequencing depth
    depth_s ~ LogNormal(0, depth_sd)                                 per-study depth (batch)
    p_cg   ∝ base_g * celltype_fold_tg * capture_sg * program_fold_cg
    capture_sg ~ LogNormal(0, batch_sd)                              gene-specific capture (batch)
and each study lacks a random 3-12% of the genes (``missing_gene_fraction``: columns absent
from its file). A planted program makes a fraction of the cells of the affected cell types
"active"; active cells have the program's genes multiplied by 1 + effect_scale * fold * w_g.
The fraction depends on the disease's planted strength and on a per-donor factor, so
per-sample hit rates vary. Each donor has a simulated sex and age (obs ``sex``, ``age``; drawn
from a stream of their own, so they change no count), which the atlas carries as donor metadata.
The validation suite (``python -m compute validate``) turns
``effect_scale``, ``batch_sd``, ``depth_sd`` and ``missing_gene_fraction``; the defaults are
the demo's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from compute.reference import hallmark_sets, immune_markers, is_current_symbol_like, ms1_signature

__all__ = [
    "CELL_TYPES",
    "DISEASES",
    "PROGRAMS",
    "ProgramSpec",
    "SimulationConfig",
    "demo_manifest_text",
    "gene_universe",
    "simulate_studies",
]

HEALTHY = "healthy"
DISEASES = (
    "sepsis",
    "COVID-19",
    "Kawasaki disease",
    "systemic lupus erythematosus",
    "influenza",
    "rheumatoid arthritis",
    "multiple sclerosis",
    "Crohn disease",
    "asthma",
)

# cell type -> (marker-tree entries whose positive markers it expresses, base proportion)
CELL_TYPES: dict[str, tuple[tuple[str, ...], float]] = {
    "CD4 T cell": (("T cell", "CD4 Naive T cell", "CD4 TCM"), 0.28),
    "CD8 T cell": (("T cell", "CD8 Naive T cell", "CD8 TEM"), 0.14),
    "NK cell": (("Natural killer cell", "CD56-dim NK cell"), 0.10),
    "B cell": (("B cell", "Naive B cell"), 0.12),
    "classical monocyte": (("CD14+ Monocyte",), 0.22),
    "non-classical monocyte": (("CD16+ Monocyte",), 0.06),
    "plasmacytoid dendritic cell": (("Plasmacytoid dendritic cell",), 0.03),
    "conventional dendritic cell": (("CD1C+ dendritic cell",), 0.05),
}
# the ontology terms of the simulated labels, written as CELLxGENE-schema *_ontology_term_id
# columns (MONDO has no "sepsis"; the CELLxGENE schema's nearest is "infectious disease with sepsis")
CELL_TYPE_TERMS = {
    "CD4 T cell": "CL:0000624", "CD8 T cell": "CL:0000625", "NK cell": "CL:0000623", "B cell": "CL:0000236",
    "classical monocyte": "CL:0000860", "non-classical monocyte": "CL:0000875",
    "plasmacytoid dendritic cell": "CL:0000784", "conventional dendritic cell": "CL:0000990",
}
DISEASE_TERMS = {
    HEALTHY: "PATO:0000461", "sepsis": "MONDO:1040015", "COVID-19": "MONDO:0100096", "Kawasaki disease": "MONDO:0012727",
    "systemic lupus erythematosus": "MONDO:0007915", "influenza": "MONDO:0005812", "rheumatoid arthritis": "MONDO:0008383",
    "multiple sclerosis": "MONDO:0005301", "Crohn disease": "MONDO:0005011", "asthma": "MONDO:0004979",
    # diseases only the planted studies of the evidence validation use (PlantedStudy)
    "ulcerative colitis": "MONDO:0005101", "psoriasis": "MONDO:0005083",
}
TISSUE_TERMS = {"blood": "UBERON:0000178"}
# scanpy's PBMC 68k bulk labels -> Cell Ontology (the demo manifest's columns.cell_type_map).
# Sorted CD14+ monocytes are the classical population, hence CL:0000860 rather than the broader
# "CD14-positive monocyte" the label matches by itself.
PBMC68K_CELL_TYPE_MAP = {
    "CD14+ Monocyte": "CL:0000860", "CD56+ NK": "CL:0000623", "CD4+/CD25 T Reg": "CL:0000815",
    "CD4+/CD45RA+/CD25- Naive T": "CL:0000895", "CD4+/CD45RO+ Memory": "CL:0000897", "CD8+ Cytotoxic T": "CL:0000625",
    "CD8+/CD45RA+ Naive Cytotoxic": "CL:0000900", "CD34+": None,
}
def _atlas_name(term_id: str) -> str:
    """The name the atlas shows for a simulated label: its ontology term's label. The planted
    truth uses these names, so that it compares directly with the atlas's rankings."""
    from compute.vocabulary import HEALTHY as NORMAL
    from compute.vocabulary import ontologies

    return "normal" if term_id == NORMAL else ontologies().term(term_id).label


# bump when the files' layout changes for the same configuration (2: ontology term id columns; 3: truth in the atlas's term
# labels; 4: each donor's sex and age)
_FILE_LAYOUT = 4
# each donor's simulated sex and age come from their own stream, seeded from the configuration's seed: the
# counts, and so every number the demo shows, are those drawn before donors had them
_DONOR_STREAM = 0x5E7A6E
# the simulated donors' ages (years, inclusive): Kawasaki disease is a disease of young children, and so
# are the healthy donors its studies compare them with; every other study's donors are adults
_AGES = {"Kawasaki disease": (1, 8)}
_ADULT_AGES = (21, 85)
_MYELOID = ("classical monocyte", "non-classical monocyte", "conventional dendritic cell")
_MYELOID_GENES = ("LYZ", "CST3", "TYROBP", "FCER1G", "AIF1", "LST1", "CD68", "CSF1R", "SPI1")


@dataclass(frozen=True)
class ProgramSpec:
    """A planted program: genes up in a fraction of cells of some types, in some diseases."""

    name: str
    genes: tuple[str, ...]
    cell_types: tuple[str, ...]
    strength: dict[str, float]  # disease -> planted strength in [0, 1]
    fold: float = 3.0
    base_fraction: float = 0.03  # active fraction in healthy donors and unaffected diseases


def _programs() -> tuple[ProgramSpec, ...]:
    hall = hallmark_sets()
    ms1 = tuple(g for g in ms1_signature() if is_current_symbol_like(g))
    return (
        ProgramSpec(
            name="MS1",
            genes=ms1,
            cell_types=("classical monocyte",),
            strength={"sepsis": 1.0, "COVID-19": 0.75, "Kawasaki disease": 0.5},
        ),
        ProgramSpec(
            name="interferon alpha response",
            genes=hall["HALLMARK_INTERFERON_ALPHA_RESPONSE"],
            cell_types=tuple(CELL_TYPES),
            strength={"systemic lupus erythematosus": 1.0, "influenza": 0.7, "COVID-19": 0.4},
        ),
        ProgramSpec(
            name="TNF-alpha/NF-kB",
            genes=hall["HALLMARK_TNFA_SIGNALING_VIA_NFKB"],
            cell_types=("classical monocyte", "non-classical monocyte"),
            strength={"rheumatoid arthritis": 0.8, "Crohn disease": 0.6},
        ),
    )


PROGRAMS = _programs()


@dataclass(frozen=True)
class PlantedStudy:
    """A study added to the corpus to test what the disease evidence says (method.md 7): its
    ``disease`` and donor counts; ``artifact_program``: that program's genes captured
    ``artifact_fold`` x more in every donor of the study (a technical batch, no biology);
    ``program_absent``: no program planted in this study whatever its disease's strength."""

    id: str
    disease: str
    disease_donors: int = 3
    healthy_donors: int = 2
    artifact_program: str | None = None
    artifact_fold: float = 2.0
    program_absent: bool = False


@dataclass(frozen=True)
class SimulationConfig:
    """Sizes of the simulated corpus; the defaults are the demo's."""

    n_studies: int = 24
    disease_donors: int = 3
    healthy_donors: int = 2
    cells_per_sample: tuple[int, int] = (200, 320)
    max_genes: int | None = None  # keep only this many genes (programs and markers kept first)
    seed: int = 0
    missing_gene_fraction: tuple[float, float] = (0.03, 0.12)
    theta: float = 8.0
    mean_library_size: float = 1500.0
    effect_scale: float = 1.0  # multiplies every planted program's fold change
    batch_sd: float = 0.25  # sd of log gene-specific capture per study
    depth_sd: float = 0.35  # sd of log sequencing depth per study
    planted_studies: tuple[PlantedStudy, ...] = ()  # studies after the regular ones (see PlantedStudy)

    def __post_init__(self):
        if not self.effect_scale >= 0 or not np.isfinite(self.effect_scale):
            raise ValueError(f"effect_scale must be a finite number >= 0, got {self.effect_scale}")
        for name in ("batch_sd", "depth_sd"):
            v = getattr(self, name)
            if not v >= 0 or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        lo, hi = self.missing_gene_fraction
        if not 0 <= lo <= hi < 1:
            raise ValueError(f"missing_gene_fraction must be (lo, hi) with 0 <= lo <= hi < 1, got {self.missing_gene_fraction}")

    def fingerprint(self) -> str:
        doc = asdict(self)
        if not self.planted_studies:  # corpora without planted studies keep the fingerprints they had
            doc.pop("planted_studies")
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _pbmc68k_genes() -> list[str]:
    import scanpy as sc

    a = sc.datasets.pbmc68k_reduced()  # bundled with scanpy: read from the wheel, no download
    return list(a.raw.var_names) if a.raw is not None else list(a.var_names)


def gene_universe(max_genes: int | None = None, rng: np.random.Generator | None = None) -> list[str]:
    """Real human symbols: planted-program genes, immune markers, Hallmarks, PBMC 68k genes.

    With ``max_genes``, program and marker genes are kept and the rest sampled to fill.
    """
    core: dict[str, None] = {}
    for p in PROGRAMS:
        core.update(dict.fromkeys(p.genes))
    for entries, _ in CELL_TYPES.values():
        for e in entries:
            core.update(dict.fromkeys(immune_markers()[e]))
    core.update(dict.fromkeys(_MYELOID_GENES))
    rest: dict[str, None] = {}
    for genes in hallmark_sets().values():
        rest.update(dict.fromkeys(genes))
    for g in immune_markers().values():
        rest.update(dict.fromkeys(g))
    rest.update(dict.fromkeys(_pbmc68k_genes()))
    keep = [g for g in core if is_current_symbol_like(g)]
    others = sorted(g for g in rest if g not in core and is_current_symbol_like(g))
    if max_genes is not None and len(keep) + len(others) > max_genes:
        rng = rng or np.random.default_rng(0)
        n = max(0, max_genes - len(keep))
        others = list(rng.choice(others, size=n, replace=False))
    return sorted(set(keep) | set(others))


@dataclass
class _Truth:
    config: dict
    names: str = ("diseases and cell types as the atlas shows them: the labels of their ontology terms "
                  "(DISEASE_TERMS, CELL_TYPE_TERMS in compute/demo/_simulate.py; 'sepsis' is 'infectious disease with sepsis', "
                  "healthy donors are 'normal')")
    programs: list[dict] = field(default_factory=list)
    studies: list[dict] = field(default_factory=list)


def _study_plan(cfg: SimulationConfig) -> list[tuple[str, str]]:
    """(study id, disease) for each simulated study; diseases cycle so each gets >= 2 studies;
    the planted studies last."""
    return [(f"SIM{i + 1:02d}", DISEASES[i % len(DISEASES)]) for i in range(cfg.n_studies)] + [
        (p.id, p.disease) for p in cfg.planted_studies]


def _celltype_profiles(genes: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per cell type, a multiplicative fold per gene over the shared base profile."""
    idx = {g: i for i, g in enumerate(genes)}
    markers = immune_markers()
    out = {}
    for ct, (entries, _) in CELL_TYPES.items():
        fold = np.ones(len(genes))
        for e in entries:
            for g in markers[e]:
                if g in idx:
                    fold[idx[g]] = rng.uniform(10, 30)
        if ct in _MYELOID:
            for g in _MYELOID_GENES:
                if g in idx:
                    fold[idx[g]] = max(fold[idx[g]], rng.uniform(8, 20))
        specific = rng.choice(len(genes), size=40, replace=False)
        fold[specific] *= rng.uniform(3, 6, size=40)
        out[ct] = fold
    return out


def simulate_studies(out_dir: str | Path, config: SimulationConfig | None = None) -> dict:
    """Write ``SIMnn.h5ad`` studies and ``planted_truth.json`` into ``out_dir``.

    Returns the planted truth (also written). Deterministic from ``config.seed``.
    Skips the work when ``out_dir/simulation.json`` records the same configuration.
    """
    import anndata as ad

    cfg = config or SimulationConfig()
    out_dir = Path(out_dir)
    stamp = out_dir / "simulation.json"
    truth_path = out_dir / "planted_truth.json"
    plan = _study_plan(cfg)
    if stamp.is_file() and truth_path.is_file():
        recorded = json.loads(stamp.read_text())
        if recorded.get("fingerprint") == cfg.fingerprint() and recorded.get("layout") == _FILE_LAYOUT and all(
            (out_dir / f"{sid}.h5ad").is_file() for sid, _ in plan
        ):
            return json.loads(truth_path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)

    root = np.random.default_rng(cfg.seed)
    genes = gene_universe(cfg.max_genes, np.random.default_rng(cfg.seed))
    n_genes = len(genes)
    gidx = {g: i for i, g in enumerate(genes)}
    # heavy-tailed base profile: a few genes high, most low, as in real scRNA-seq
    base = np.exp(root.normal(0.0, 2.1, size=n_genes))
    profiles = _celltype_profiles(genes, root)
    programs = []
    for p in PROGRAMS:
        pg = np.array([gidx[g] for g in p.genes if g in gidx])
        programs.append((p, pg, root.uniform(0.5, 1.0, size=len(pg))))

    truth = _Truth(config=asdict(cfg) | {"fingerprint": cfg.fingerprint(), "n_genes": n_genes})
    for p, pg, w in programs:
        truth.programs.append(
            {
                "name": p.name,
                "genes": [genes[i] for i in pg],
                "gene_weights": [round(float(x), 4) for x in w],
                "cell_types": [_atlas_name(CELL_TYPE_TERMS[c]) for c in p.cell_types],
                "strength": {_atlas_name(DISEASE_TERMS[d]): v for d, v in p.strength.items()},
                "fold": p.fold,
                "effect_scale": cfg.effect_scale,
                "base_fraction": p.base_fraction,
                "active_fraction_rule": "base_fraction + 0.6 * strength * donor_factor, donor_factor ~ U(0.5, 1.5)",
                "active_cell_rule": "program genes x (1 + effect_scale * fold * gene_weight)",
            }
        )

    ct_names = list(CELL_TYPES)
    ct_props = np.array([CELL_TYPES[c][1] for c in ct_names])
    seeds = np.random.SeedSequence(cfg.seed).spawn(len(plan))
    donor_seeds = np.random.SeedSequence([cfg.seed, _DONOR_STREAM]).spawn(len(plan))
    planted = {p.id: p for p in cfg.planted_studies}
    for (sid, disease), seed, donor_seed in zip(plan, seeds, donor_seeds, strict=True):
        rng = np.random.default_rng(seed)
        donor_rng = np.random.default_rng(donor_seed)
        depth = float(np.exp(rng.normal(0, cfg.depth_sd)))
        capture = np.exp(rng.normal(0, cfg.batch_sd, size=n_genes))
        miss_frac = rng.uniform(*cfg.missing_gene_fraction)
        missing = np.sort(rng.choice(n_genes, size=int(miss_frac * n_genes), replace=False))
        plant = planted.get(sid)
        n_disease, n_healthy = (plant.disease_donors, plant.healthy_donors) if plant else (cfg.disease_donors, cfg.healthy_donors)
        if plant is not None and plant.artifact_program:
            # a capture bias on the program's genes in every donor of the study: batch, not biology
            artifact = next(pg for p, pg, _ in programs if p.name == plant.artifact_program)
            capture[artifact] *= plant.artifact_fold
            missing = np.setdiff1d(missing, artifact)
        donors = [(f"{sid}_D{j + 1}", disease) for j in range(n_disease)] + [
            (f"{sid}_H{j + 1}", HEALTHY) for j in range(n_healthy)
        ]
        blocks, obs_rows, samples_truth = [], [], []
        ages = _AGES.get(disease, _ADULT_AGES)
        for donor, dis in donors:
            sex = str(donor_rng.choice(["female", "male"]))
            age = int(donor_rng.integers(ages[0], ages[1] + 1))
            n_cells = int(rng.integers(*cfg.cells_per_sample))
            props = rng.dirichlet(ct_props * 60)
            types = rng.choice(len(ct_names), size=n_cells, p=props)
            mult = np.ones((n_cells, n_genes))
            sample_programs = {}
            for p, pg, w in programs:
                strength = 0.0 if plant is not None and plant.program_absent else p.strength.get(dis, 0.0)
                factor = float(rng.uniform(0.5, 1.5))
                frac = min(0.95, p.base_fraction + 0.6 * strength * factor)
                eligible = np.isin(types, [ct_names.index(c) for c in p.cell_types])
                active = eligible & (rng.random(n_cells) < frac)
                mult[np.ix_(active, pg)] *= 1.0 + cfg.effect_scale * p.fold * w
                sample_programs[p.name] = {
                    "strength": strength,
                    "active_fraction": round(frac, 4),
                    "active_cells": int(active.sum()),
                    "eligible_cells": int(eligible.sum()),
                }
            prof = np.stack([profiles[ct_names[t]] for t in types]) * base * capture * mult
            prof /= prof.sum(axis=1, keepdims=True)
            lib = np.exp(rng.normal(np.log(cfg.mean_library_size * depth), 0.35, size=n_cells))
            mu = prof * lib[:, None]
            lam = rng.gamma(cfg.theta, mu / cfg.theta)
            counts = rng.poisson(lam).astype(np.float32)
            blocks.append(sp.csr_matrix(counts))
            for k in range(n_cells):
                obs_rows.append((f"{donor}_c{k:04d}", ct_names[types[k]], dis, donor, donor, "blood", sex, age))
            samples_truth.append({"sample": donor, "disease": _atlas_name(DISEASE_TERMS[dis]), "n_cells": n_cells,
                                  "sex": sex, "age": age, "programs": sample_programs})
        X = sp.vstack(blocks).tocsr()
        keep = np.setdiff1d(np.arange(n_genes), missing)
        X = X[:, keep]
        obs = pd.DataFrame(obs_rows, columns=["cell_id", "cell_type", "disease", "donor", "sample", "tissue", "sex", "age"])
        obs = obs.set_index("cell_id")
        for c, terms in (("cell_type", CELL_TYPE_TERMS), ("disease", DISEASE_TERMS), ("tissue", TISSUE_TERMS)):
            obs[f"{c}_ontology_term_id"] = obs[c].map(terms)
        for c in obs.columns:
            if c != "age":  # age in years, a number as a study's file would hold it
                obs[c] = obs[c].astype("category")
        adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[genes[i] for i in keep]))
        adata.uns["simulated"] = True
        adata.uns["sigatlas_simulation"] = json.dumps(
            {"study": sid, "disease": disease, "depth_factor": depth, "config": cfg.fingerprint()}
        )
        adata.write_h5ad(out_dir / f"{sid}.h5ad", compression="gzip")
        truth.studies.append(
            {
                "id": sid,
                "planted": asdict(plant) if plant else None,
                "disease": _atlas_name(DISEASE_TERMS[disease]),
                "depth_factor": round(depth, 4),
                "missing_genes": [genes[i] for i in missing],
                "samples": samples_truth,
            }
        )
    result = asdict(truth)
    truth_path.write_text(json.dumps(result, indent=1))
    stamp.write_text(json.dumps({"fingerprint": cfg.fingerprint(), "layout": _FILE_LAYOUT, "studies": [s for s, _ in plan]}))
    return result


def demo_manifest_text(config: SimulationConfig | None = None, data_dir: str = "data/demo") -> str:
    """The demo ``data_manifest.yaml``: the real PBMC 68k study plus every simulated study."""
    import yaml

    cfg = config or SimulationConfig()
    studies = [
        {
            "id": "PBMC68K",
            "title": "10x PBMC 68k (reduced): 700 real PBMCs bundled with scanpy",
            "source": {"kind": "scanpy-pbmc68k"},
            "organism": "human",
            "tissue": "blood",
            "disease": "healthy",
            # bulk_labels come from sorted populations; "CD14+ Monocyte", "CD19+ B" and "Dendritic"
            # match Cell Ontology terms by label or synonym, the rest are mapped by hand here;
            # "CD34+" (sorted progenitors, no single CL term) is left for label transfer
            "columns": {"cell_type": "bulk_labels", "sample": None, "donor": None, "cell_type_map": PBMC68K_CELL_TYPE_MAP},
            "simulated": False,
        }
    ]
    planted = {p.id: p for p in cfg.planted_studies}
    for sid, disease in _study_plan(cfg):
        plant = planted.get(sid)
        title = f"SIMULATED {disease} vs healthy PBMC ({sid})"
        if plant is not None:
            title = (f"SIMULATED {disease} ({plant.disease_donors} donors) vs healthy ({plant.healthy_donors} donors) PBMC ({sid})"
                     + (f"; {plant.artifact_program} genes captured {plant.artifact_fold:g}x (batch artifact)"
                        if plant.artifact_program else "") + ("; no program planted" if plant.program_absent else ""))
        studies.append(
            {
                "id": sid,
                "title": title,
                "source": {"kind": "h5ad", "path": f"{data_dir}/{sid}.h5ad"},
                "organism": "human",
                "tissue": {"column": "tissue"},
                "disease": {"column": "disease"},
                "columns": {"cell_type": "cell_type", "sample": "sample", "donor": "donor"},
                "simulated": True,
            }
        )
    doc = {
        "version": 1,
        "atlas": {"name": "demo", "out": "atlas/demo"},
        "seed": 0,
        # smaller than SCimilarity's 1024-1024 so the demo builds in minutes on a laptop CPU
        "model": {"kind": "train", "hidden_sizes": [512, 256], "latent_dim": 128, "epochs": 12, "batch_size": 512},
        "ingest": {"min_genes": 50, "min_counts": 100, "min_gene_overlap": 500},
        "attribution": {"method": "ig", "n_steps": 50, "batch_size": 256},
        "embedding": {"n_neighbors": 15, "min_dist": 0.3},
        "studies": studies,
    }
    header = (
        "# SigAtlas demo manifest (version 1). Generated by `python -m compute simulate --write-manifest`.\n"
        "# PBMC68K is real data; every SIM study is SIMULATED (planted programs, see\n"
        f"# {data_dir}/planted_truth.json) and carries `simulated: true`.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)

"""Demo data: simulated immune studies with planted programs (labelled simulated everywhere)."""

from compute.demo._simulate import (
    CELL_TYPES,
    DISEASES,
    PROGRAMS,
    PlantedStudy,
    ProgramSpec,
    SimulationConfig,
    demo_manifest_text,
    gene_universe,
    simulate_studies,
)

__all__ = [
    "CELL_TYPES",
    "DISEASES",
    "PROGRAMS",
    "PlantedStudy",
    "ProgramSpec",
    "SimulationConfig",
    "demo_manifest_text",
    "gene_universe",
    "simulate_studies",
]

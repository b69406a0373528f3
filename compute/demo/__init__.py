"""Demo data: simulated immune studies with planted programs (labelled simulated everywhere)."""

from compute.demo._numbers import (
    README_BEGIN,
    README_END,
    build_environment,
    demo_numbers,
    numbers_markdown,
    readme_block,
    update_readme,
    write_numbers,
)
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
    "README_BEGIN",
    "README_END",
    "PlantedStudy",
    "ProgramSpec",
    "SimulationConfig",
    "build_environment",
    "demo_manifest_text",
    "demo_numbers",
    "gene_universe",
    "numbers_markdown",
    "readme_block",
    "simulate_studies",
    "update_readme",
    "write_numbers",
]

"""Gene modules from co-attribution (or co-expression) across the atlas's cells, and where a
signature sits among them. (Not the encoder's torch modules: those are compute.model.)"""

from compute.genemodules._modules import (
    MODULES_DIR,
    MODULES_VERSION,
    GeneModules,
    SignatureModules,
    coherence_null,
    default_params,
    gene_modules,
    read_gene_modules,
    signature_modules,
    stored_modules,
    write_gene_modules,
)

__all__ = ["MODULES_DIR", "MODULES_VERSION", "GeneModules", "SignatureModules", "coherence_null", "default_params", "gene_modules", "read_gene_modules",
           "signature_modules", "stored_modules", "write_gene_modules"]

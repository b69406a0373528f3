"""Gene modules from co-attribution (or co-expression) across the atlas's cells, and where a
signature sits among them. (Not the encoder's torch modules: those are compute.model.)"""

from compute.genemodules._modules import (
    GeneModules,
    SignatureModules,
    coherence_null,
    gene_modules,
    signature_modules,
)

__all__ = ["GeneModules", "SignatureModules", "coherence_null", "gene_modules", "signature_modules"]

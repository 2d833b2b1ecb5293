"""Training data: manifests, degradations, the random chain, the paired dataset."""

"""Key material: generation, cosign-format encryption, loading and export."""

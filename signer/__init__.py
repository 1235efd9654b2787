"""Signing: payloads (simple signing, in-toto, DSSE), signers and SLSA provenance."""

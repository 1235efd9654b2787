"""Verification: signatures, bundles, attestations, policy, gate and admission webhook."""

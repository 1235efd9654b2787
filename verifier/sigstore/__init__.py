"""Sigstore bundles, trusted roots and transparency logs, verified offline (no sigstore library on this path)."""

"""Notary Project signatures: JWS envelopes, the trust policy and trust store, signatures on an image."""

"""imgseal: make container deployments trust digests, not tags."""

__version__ = "0.1.0"

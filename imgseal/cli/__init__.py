"""The command-line interface: the composition root and the only place that prints.

Heavy libraries (requests, sigstore, rich) are imported inside commands, never here, so
that ``imgseal --help`` and ``imgseal verify --key`` start fast.
"""

"""Where images live: registries and OCI layouts behind one :class:`Store` protocol."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from imgseal.store.base import Store

if TYPE_CHECKING:
    from imgseal.reference import LayoutReference, Reference
    from imgseal.store.registry import RegistryClient, RegistryOptions

__all__ = ["Store", "StoreFactory"]


class StoreFactory:
    """Opens stores for references, sharing one client (connection pool, tokens) per registry host."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, host: str) -> RegistryClient:
        from imgseal.store.registry import RegistryClient

        with self._lock:
            if host not in self._clients:
                self._clients[host] = RegistryClient(host, self.options)
            return self._clients[host]

    def open(self, ref: Reference | LayoutReference, *, create: bool = False) -> Store:
        from imgseal.reference import LayoutReference

        if isinstance(ref, LayoutReference):
            from imgseal.store.layout import LayoutStore

            return LayoutStore(ref.path, create=create)
        return self.client(ref.api_host).repository(ref.repository)

    @property
    def request_count(self) -> int:
        return sum(c.request_count for c in self._clients.values())

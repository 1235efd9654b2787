"""Where images live: registries and OCI layouts behind one :class:`Store` protocol."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from imgseal.store.base import Store

if TYPE_CHECKING:
    from imgseal.reference import LayoutReference, Reference
    from imgseal.store.auth import Credentials
    from imgseal.store.registry import RegistryClient, RegistryOptions

#: Clients kept for credentials given per call (one per namespace's pull secret, say); the
#: least recently used is dropped past this, so a busy webhook does not grow without bound.
MAX_CREDENTIAL_CLIENTS = 256

__all__ = ["Store", "StoreFactory"]


class StoreFactory:
    """Opens stores for references, sharing one client (connection pool, tokens) per registry host."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        # Keyed by (host, credentials): registry tokens are per identity, so a client (and the
        # tokens it caches) is never shared between two sets of credentials.
        self._credential_clients: OrderedDict[tuple[str, Credentials], RegistryClient] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, host: str, credentials: Credentials | None = None) -> RegistryClient:
        """The pooled client for ``host``: with its own credentials lookup, or with ``credentials`` only."""
        from imgseal.store.registry import RegistryClient, RegistryOptions

        with self._lock:
            if credentials is None:
                if host not in self._clients:
                    self._clients[host] = RegistryClient(host, self.options)
                return self._clients[host]
            key = (host, credentials)
            found = self._credential_clients.get(key)
            if found is None:
                options = dataclasses.replace(self.options or RegistryOptions(), credentials={host: credentials})
                found = self._credential_clients[key] = RegistryClient(host, options)
                while len(self._credential_clients) > MAX_CREDENTIAL_CLIENTS:
                    self._credential_clients.popitem(last=False)
            else:
                self._credential_clients.move_to_end(key)
            return found

    def open(self, ref: Reference | LayoutReference, *, create: bool = False,
             credentials: Credentials | None = None) -> Store:
        """A store for ``ref``; ``credentials`` replace the registry's usual lookup (docker config …)."""
        from imgseal.reference import LayoutReference

        if isinstance(ref, LayoutReference):
            from imgseal.store.layout import LayoutStore

            return LayoutStore(ref.path, create=create)
        return self.client(ref.api_host, credentials).repository(ref.repository)

    @property
    def request_count(self) -> int:
        with self._lock:
            clients = [*self._clients.values(), *self._credential_clients.values()]
        return sum(c.request_count for c in clients)

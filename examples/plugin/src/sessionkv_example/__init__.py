"""sessionkv-example: a third-party sessionkv backend, ``dictfile:///path.json``."""

from .store import JSONFileSessionKVStore

__all__ = ["JSONFileSessionKVStore"]

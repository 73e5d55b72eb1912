"""The one error tree of sessionkv.

Every error the library raises on purpose derives from :class:`SessionKVError`, and
each also derives from the builtin a plain ``except`` clause would reach for, so code
that knows nothing of sessionkv still catches the right thing::

    SessionKVError
    ├── ConfigurationError (ValueError)        bad URL, option or plugin set-up
    │   ├── UnknownBackendError                 no backend claims the URL scheme
    │   └── MissingExtraError (ImportError)     the backend's pip extra is not installed
    ├── InvalidKeyError (ValueError)            empty, not UTF-8, or longer than declared
    ├── InvalidTTLError (ValueError)            a TTL that is not a finite number > 0
    ├── StoreClosedError (RuntimeError)         you closed it: the store is not usable
    └── BackendError (RuntimeError)             it broke under you: driver error in __cause__
        └── BackendUnavailableError             the server cannot be reached
            └── BackendTimeoutError (TimeoutError)   no answer within the timeout

Warnings (a URL scheme claimed by two plugins) are :class:`SessionKVWarning`.
Wrong argument *types* raise a plain :class:`TypeError`, as Python itself does.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigurationError",
    "InvalidKeyError",
    "InvalidTTLError",
    "MissingExtraError",
    "SessionKVError",
    "SessionKVWarning",
    "StoreClosedError",
    "UnknownBackendError",
]


class SessionKVError(Exception):
    """Base of every error sessionkv raises on purpose."""


class ConfigurationError(SessionKVError, ValueError):
    """The configuration cannot work: a bad URL, an unknown option, a broken plugin."""


class UnknownBackendError(ConfigurationError):
    """No discovered backend claims the URL's scheme; the message lists the known ones."""


class MissingExtraError(ConfigurationError, ImportError):
    """A backend's client library is not installed; the message names the pip extra."""

    def __init__(
        self, backend: str, extra: str, missing: str | None = None, *, package: str = "sessionkv"
    ) -> None:
        self.backend = backend
        self.extra = extra
        self.requirement = f"{package}[{extra}]"
        what = f" ({missing} is not importable)" if missing else ""
        super().__init__(
            f"the {backend!r} backend needs its client library{what}: "
            f'pip install "{self.requirement}"'
        )


class InvalidKeyError(SessionKVError, ValueError):
    """A key (or registry id) the store cannot hold: empty, not encodable as UTF-8, or
    longer than the store's declared ``max_key_bytes``."""


class InvalidTTLError(SessionKVError, ValueError):
    """A TTL that is not a finite number of seconds greater than zero."""


class StoreClosedError(SessionKVError, RuntimeError):
    """The store was closed by its owner; open a new one to go on. Operations still in
    flight when ``close()`` ran end with this error too (their outcome is unknown)."""


class BackendError(SessionKVError, RuntimeError):
    """The backend failed under the store; the driver's exception is the ``__cause__``."""


class BackendUnavailableError(BackendError):
    """The backend's server cannot be reached (refused, reset, DNS, every member down)."""


class BackendTimeoutError(BackendUnavailableError, TimeoutError):
    """The backend did not answer within the configured timeout.

    For a write the outcome is unknown, as in every distributed store: the server may
    have applied it after the client stopped waiting (a fault trial saw 3 of 6 timed-out
    registers on a paused Redis appear once it resumed). Retry idempotent writes, or read
    before assuming it did not happen."""


class SessionKVWarning(UserWarning):
    """Something works, but not as configured: e.g. two plugins claim one URL scheme."""

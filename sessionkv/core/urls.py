"""Store URLs: parsing (several hosts, credentials, ``?option=value``) and redaction.

Backends turn a :class:`StoreURL` into constructor arguments; credentials are kept out
of every ``repr`` and message through :func:`redact_url`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["StoreURL", "parse_host", "parse_store_url", "redact_url", "url_scheme"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_scheme(url: str) -> str:
    """The lower-cased scheme of ``url``; a URL without ``scheme://`` is an error."""
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    match = _SCHEME.match(url)
    if match is None:
        raise ConfigurationError(
            f"{redact_url(url)!r} is not a store URL: expected 'scheme://...', "
            "for example 'memory://', 'sqlite:///sessions.db' or 'redis://localhost:6379/0'"
        )
    return match.group(1).lower()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and errors).

    The user information ends at the *last* ``@`` before the hosts, wherever a ``/``,
    ``?`` or ``#`` stands in an unescaped password: everything between ``scheme://``
    and that ``@`` after the first ``:`` is masked."""
    if not isinstance(url, str):
        return repr(type(url))
    match = _SCHEME.match(url)
    if match is None:
        return url
    rest = url[match.end() :]
    at = rest.rfind("@")
    if at == -1:
        return url
    userinfo, tail = rest[:at], rest[at + 1 :]
    user, sep, _ = userinfo.partition(":")
    if not sep and any(stop in user for stop in "/?#"):
        return url  # an '@' in the path or query, not in the authority
    masked = f"{user}:***" if sep else user
    return f"{match.group(0)}{masked}@{tail}"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``hosts`` keeps every ``host:port`` of a comma-separated list."""

    scheme: str
    netloc: str = field(repr=False)
    username: str | None
    password: str | None = field(repr=False)
    hosts: tuple[tuple[str, int | None], ...]
    path: str
    query: Mapping[str, str]
    redacted: str

    def options(
        self,
        overrides: Mapping[str, Any],
        allowed: Mapping[str, Callable[[str], Any]],
    ) -> dict[str, Any]:
        """Constructor options: the URL's query, converted by ``allowed``, then the
        keyword ``overrides`` on top. An unknown name is a :class:`ConfigurationError`."""
        unknown = sorted((set(self.query) | set(overrides)) - set(allowed))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {unknown} for {self.redacted!r}; "
                f"this backend takes {sorted(allowed)}"
            )
        result: dict[str, Any] = {}
        for name, raw in self.query.items():
            try:
                result[name] = allowed[name](raw)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"option {name}={raw!r} in {self.redacted!r} is invalid: {exc}"
                ) from None
        result.update(overrides)
        return result


def parse_host(item: str, url: str) -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``[IPv6]:port`` as ``(host, port or None)``; ``url``
    (already redacted) names the configuration in errors."""
    if item.startswith("["):  # [IPv6]:port
        end = item.find("]")
        if end == -1:
            raise ConfigurationError(f"unbalanced '[' in the hosts of {url!r}")
        host, rest = item[1:end], item[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ConfigurationError(f"bad host {item!r} in {url!r}")
    elif ":" in item:
        host, port_text = item.rsplit(":", 1)
    else:
        host, port_text = item, ""
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            hint = ""
            if "@" in url:
                hint = (
                    " (a password holding '/', '?', '#' or '@' must be percent-encoded, "
                    "e.g. '#' as %23)"
                )
            raise ConfigurationError(f"bad port in {url!r}{hint}")
        port = int(port_text)
    return unquote(host), port


def parse_store_url(url: str) -> StoreURL:
    """Split a store URL into scheme, credentials, hosts, path and query options."""
    scheme = url_scheme(url)
    redacted = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse {redacted!r}: {exc}") from None
    netloc = parts.netloc
    username = password = None
    hostlist = netloc
    if "@" in netloc:
        userinfo, hostlist = netloc.rsplit("@", 1)
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    hosts = tuple(parse_host(h, redacted) for h in hostlist.split(",") if h)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in query:
            raise ConfigurationError(f"option {name!r} is given twice in {redacted!r}")
        query[name] = value
    return StoreURL(
        scheme=scheme,
        netloc=netloc,
        username=username,
        password=password,
        hosts=hosts,
        path=unquote(parts.path),
        query=query,
        redacted=redacted,
    )

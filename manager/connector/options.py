"""What the connector was asked to do, turned into the facts a connection needs.

Pure functions over the command line and the environment: the tunnel URL (the same path a
Hub CONNECTs to, with `ws`/`wss` instead of `http`/`https`), the request headers a Hub would
send, which proxy to use (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, read here once so the choice can
be logged and tested), and the local Hub's address. Kept apart from the I/O so every rule is
testable without a socket; nothing here may log or print the access key.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from manager.connector.errors import UsageError

__all__ = [
    "ConnectorOptions",
    "HubAddress",
    "choose_proxy",
    "parse_space",
    "parse_tags",
    "redact_url",
    "tunnel_headers",
    "tunnel_url",
]


@dataclass(frozen=True, slots=True)
class HubAddress:
    """Where the local Hub listens: proxied channels become TCP connections to host:port."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> HubAddress:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise UsageError(f"--hub must be an http:// URL (got {parts.scheme}://)")
        if not parts.hostname:
            raise UsageError(f"--hub has no host: {url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise UsageError(f"--hub has a bad port: {url!r}") from None
        if parts.path.strip("/") or parts.query:
            # Proxied requests reach the Hub byte for byte, so its API must be at /api/v1.
            raise UsageError(f"--hub takes scheme, host and port only (got {url!r})")
        return cls(parts.hostname, port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectorOptions:
    hub: HubAddress
    platform_api: str
    org: str
    space: str
    key: str = field(repr=False)
    hub_id: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    ca_file: str | None = None
    load_interval: float = 5.0
    poll_interval: float = 2.0

    @property
    def url(self) -> str:
        return tunnel_url(self.platform_api, self.org, self.space, tls=self.ca_file is not None)

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for a wss:// tunnel: with --ca-file only that CA is trusted (as the
        Hub's --cpm-ssl-ca-path does), otherwise the system's trust store."""
        if not self.url.startswith("wss://"):
            return None
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca-file {self.ca_file}: {exc}") from None


def parse_space(text: str) -> tuple[str, str]:
    """`ORG:SPACE` as the Hub takes it; a bare Space id implies its org (the id minus its last
    `-part`), which is how this manager names Spaces."""
    org, sep, space = text.strip().partition(":")
    if not sep:
        org, space = text.strip().rsplit("-", 1)[0], text.strip()
    space = space.split(":")[0]  # further parts are dropped, like the Hub does
    if not org or not space or "/" in org + space:
        raise UsageError(f"--platform-space must be ORG:SPACE (got {text!r})")
    return org, space


def parse_tags(text: str | None) -> tuple[str, ...]:
    """`a,b` → ("a", "b"). An empty element is refused, as the Hub refuses it."""
    if not text:
        return ()
    tags = tuple(t.strip() for t in text.split(","))
    if any(not t for t in tags):
        raise UsageError(f"--tags has an empty element: {text!r}")
    return tags


def tunnel_url(platform_api: str, org: str, space: str, *, tls: bool = False) -> str:
    """`http[s]://host[:port][/prefix]` → `ws[s]://host[:port][/prefix]/api/v1/ORG/SPACE/`.

    Without a scheme, https is assumed when a CA file was given (the Hub's own rule)."""
    api = platform_api.strip()
    if "://" not in api:
        api = ("https://" if tls else "http://") + api
    parts = urlsplit(api)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"--platform-api must be an http(s):// URL (got {platform_api!r})")
    if tls and scheme == "ws":
        raise UsageError("--ca-file needs an https:// --platform-api")
    if parts.username or parts.password:
        raise UsageError("--platform-api must not carry credentials; use --platform-api-key")
    path = f"{parts.path.rstrip('/')}/api/v1/{org}/{space}/"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def tunnel_headers(options: ConnectorOptions, hub_id: str, proof: str) -> dict[str, str]:
    """The headers a joining Hub sends (hub-protocol.md §1.3), with the Digest key proof."""
    return {
        "x-sth-description": options.description,
        "x-sth-tags": json.dumps(list(options.tags), separators=(",", ":")),
        "x-manager-id": options.space,
        "x-sth-id": hub_id,
        "x-org-id": options.org,
        "Authorization": f'Digest cnonce="{proof}"',
    }


def choose_proxy(url: str, environ: Mapping[str, str]) -> str | None:
    """The HTTP(S) proxy for the tunnel URL: HTTPS_PROXY for wss://, HTTP_PROXY for ws://
    (lower-case spellings win, as curl does), unless NO_PROXY names the host."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    names = ("https_proxy", "HTTPS_PROXY") if secure else ("http_proxy", "HTTP_PROXY")
    proxy = next((environ[n].strip() for n in names if environ.get(n, "").strip()), None)
    if proxy is None:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    port = parts.port or (443 if secure else 80)
    if bypassed(parts.hostname or "", port, no_proxy):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY the simple way: `*`, exact hosts, domain suffixes (`.example.com` or
    `example.com` both cover `a.example.com`), optionally with `:port`."""
    host = host.lower().strip("[]")
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, want_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if want_port and want_port != str(port):
            continue
        name = name.strip("[]").lstrip("*").lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _has_port(entry: str) -> bool:
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def redact_url(url: str) -> str:
    """A URL fit for a log line: user and password replaced."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

"""Command line and environment → tunnel URL, headers, proxy choice (no sockets)."""

from __future__ import annotations

import json

import pytest

from manager.connector.errors import UsageError
from manager.connector.options import (
    ConnectorOptions,
    HubAddress,
    bypassed,
    choose_proxy,
    parse_space,
    parse_tags,
    redact_url,
    tunnel_headers,
    tunnel_url,
)


@pytest.mark.parametrize(
    ("api", "tls", "url"),
    [
        ("http://127.0.0.1:9000", False, "ws://127.0.0.1:9000/api/v1/o/o-s/"),
        ("http://127.0.0.1:9000/", False, "ws://127.0.0.1:9000/api/v1/o/o-s/"),
        ("https://m.example.com/scp/", False, "wss://m.example.com/scp/api/v1/o/o-s/"),
        ("m.example.com:8443", True, "wss://m.example.com:8443/api/v1/o/o-s/"),
        ("m.example.com", False, "ws://m.example.com/api/v1/o/o-s/"),
        ("wss://m.example.com", False, "wss://m.example.com/api/v1/o/o-s/"),
    ],
)
def test_tunnel_url(api: str, tls: bool, url: str):
    assert tunnel_url(api, "o", "o-s", tls=tls) == url


@pytest.mark.parametrize("api", ["ftp://x", "http://", "http://u:p@host"])
def test_tunnel_url_refuses(api: str):
    with pytest.raises(UsageError):
        tunnel_url(api, "o", "o-s")


def test_ca_file_needs_https():
    with pytest.raises(UsageError, match="https"):
        tunnel_url("http://h", "o", "o-s", tls=True)


def test_parse_space():
    assert parse_space("org-1:org-1-space") == ("org-1", "org-1-space")
    assert parse_space("org-1-space") == ("org-1", "org-1-space")
    assert parse_space("a:b:c") == ("a", "b")
    with pytest.raises(UsageError):
        parse_space(":x")


def test_parse_tags():
    assert parse_tags(None) == ()
    assert parse_tags("a, b") == ("a", "b")
    with pytest.raises(UsageError):
        parse_tags("a,,b")


def test_hub_address():
    assert HubAddress.parse("http://127.0.0.1:8000") == HubAddress("127.0.0.1", 8000)
    assert HubAddress.parse("localhost:9").url == "http://localhost:9"
    assert HubAddress.parse("http://h/").url == "http://h:80"
    for bad in ("https://h:1", "http://h/prefix", "http://h:x"):
        with pytest.raises(UsageError):
            HubAddress.parse(bad)


def test_headers_carry_identity_and_a_digest_proof_never_the_key():
    options = ConnectorOptions(
        hub=HubAddress("127.0.0.1", 8000),
        platform_api="http://m",
        org="o",
        space="o-s",
        key="SCP-ak-secretsecretsecret",
        description="edge box",
        tags=("a", "b"),
    )
    headers = tunnel_headers(options, "hub-1", "PROOF")
    assert headers["x-sth-id"] == "hub-1"
    assert headers["x-sth-description"] == "edge box"
    assert json.loads(headers["x-sth-tags"]) == ["a", "b"]
    assert headers["x-sth-tags"] == '["a","b"]'
    assert headers["Authorization"] == 'Digest cnonce="PROOF"'
    assert "secret" not in repr(options) and "secret" not in json.dumps(headers)


WS = "ws://manager.example.com:9000/api/v1/o/o-s/"
WSS = "wss://manager.example.com/api/v1/o/o-s/"


def test_proxy_by_scheme():
    env = {"HTTP_PROXY": "http://p1:3128", "HTTPS_PROXY": "http://p2:3128"}
    assert choose_proxy(WS, env) == "http://p1:3128"
    assert choose_proxy(WSS, env) == "http://p2:3128"
    assert choose_proxy(WS, {}) is None
    assert choose_proxy(WS, {"http_proxy": "p3:8080", "HTTP_PROXY": "http://p1:1"}) == (
        "http://p3:8080"
    )


@pytest.mark.parametrize(
    ("no_proxy", "skip"),
    [
        ("*", True),
        ("manager.example.com", True),
        ("example.com", True),
        (".example.com", True),
        ("other.com, example.com", True),
        ("manager.example.com:9000", True),
        ("manager.example.com:9001", False),
        ("ample.com", False),
        ("", False),
    ],
)
def test_no_proxy(no_proxy: str, skip: bool):
    env = {"HTTP_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    assert (choose_proxy(WS, env) is None) is skip


def test_no_proxy_ip_and_ipv6():
    assert bypassed("127.0.0.1", 80, "localhost,127.0.0.1")
    assert bypassed("::1", 80, "[::1]:80")
    assert not bypassed("10.0.0.1", 80, "127.0.0.1")


def test_redact_url():
    assert redact_url("http://user:pw@proxy:3128") == "http://***@proxy:3128"
    assert redact_url("http://proxy:3128") == "http://proxy:3128"

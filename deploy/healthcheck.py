"""The image's HEALTHCHECK: exit 0 if the manager in this container answers its probe path
with a 2xx, else 1. Standard library only (the slim image has no curl)."""

import os
import ssl
import sys
import urllib.request

path = os.environ.get("MANAGER_PROBE_PATH", "/healthz")
port = os.environ.get("MANAGER_PORT", "9000")
tls = bool(os.environ.get("MANAGER_SSL_CERTFILE"))
url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
# Under TLS the certificate names the public host, not 127.0.0.1: check liveness, not identity.
context = ssl._create_unverified_context() if tls else None
try:
    with urllib.request.urlopen(url, timeout=3, context=context) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except Exception as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)

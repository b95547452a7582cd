"""The one exception hierarchy of the mux package.

Owns the split between "the peer broke the protocol" and "our caller broke the API", because
the two must travel differently: a peer's mistake is recorded and reported as a
``ConnectionFailed`` event (it never escapes ``Mux.receive_data``), while a caller's mistake is a
bug on our side and is raised at once. This module must not import anything else from the
package, so every other module can use it.

    MuxError
    ├── ProtocolError   the peer sent bytes BPMux does not allow (internal to the mux)
    └── UsageError      our caller misused the Mux API (raised to the caller)
"""

from __future__ import annotations

__all__ = ["MuxError", "ProtocolError", "UsageError"]


class MuxError(Exception):
    """Base class, so the tunnel layer can translate everything from here with one ``except``."""


class ProtocolError(MuxError):
    """The peer violated BPMux; its message becomes the ``ConnectionFailed`` reason."""


class UsageError(MuxError):
    """Our own code asked the mux for something the protocol state does not allow."""

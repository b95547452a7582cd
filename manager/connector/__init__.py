"""`space-manager connect`: makes a local Hub that is joined to no platform a Space member.

The connector runs beside the Hub and dials the manager over a WebSocket (which passes L7
proxies such as nginx, where a Hub's own CONNECT tunnel does not), speaking BPMux inside like
a Hub does: channels the manager opens are piped to the Hub's HTTP API, and the control
channel is answered with messages derived from polling that API.

    options   command line → URL, headers, proxy, TLS       (pure)
    policy    back-off with full jitter, stop signals         (pure)
    feed      Hub API snapshots → control messages            (pure)
    head      a channel's request head, via h11                (pure)
    netinfo   NETWORK_INFO of this machine
    hubapi    polling the local Hub (httpcore)
    forward   a proxied channel ↔ TCP to the Hub
    control   the control channel
    runner    Connector: connect, serve (a TunnelSession over the WebSocket), reconnect, stop
"""

from manager.connector.errors import ConnectorError, LocalHubError, UsageError
from manager.connector.options import ConnectorOptions, HubAddress
from manager.connector.runner import Connector

__all__ = [
    "Connector",
    "ConnectorError",
    "ConnectorOptions",
    "HubAddress",
    "LocalHubError",
    "UsageError",
]

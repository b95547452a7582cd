"""Space manager: the control plane that self-hosted Scramjet Transform Hubs dial into."""

__version__ = "0.1.0"

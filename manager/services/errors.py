"""The service-layer exceptions; `manager.web` translates each to one HTTP status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Extra members of the JSON error body besides `error` (e.g. which plan and limit).
        self.details: dict[str, Any] = {}


class Invalid(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooLarge(ServiceError):
    status = 413


class TooMany(ServiceError):
    status = 429


class Unavailable(ServiceError):
    status = 503


class Unprocessable(ServiceError):
    status = 422


class LimitExceeded(ServiceError):
    """Over a limit of the caller's plan: 409 for Spaces, 413 for the store. The body names
    the plan and the limit, so a user knows what to ask their platform admin for."""

    def __init__(self, message: str, status: int, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.details = details

"""Domain errors, mapped once to gRPC status codes at the edge (see grpc_server.py)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a handler may raise on purpose; the message is shown to the caller.

    ``message`` is English (the status's message, the log's, the API's). ``zh`` is the same refusal
    in Chinese for the people a center's pages speak to first: it travels as a google.rpc
    LocalizedMessage (locale zh-CN) in the status details, and the gateway shows it above the English.
    """

    reason = "DOMAIN_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, field: str | None = None, zh: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field
        self.zh = zh
        if reason:
            self.reason = reason


class InvalidArgument(DomainError):
    """Bad input: a missing or malformed field."""

    reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    reason = "NOT_FOUND"


class FailedPrecondition(DomainError):
    """The request is well formed but illegal in the current state (a closed task, ...)."""

    reason = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    """The caller may not do this (another window's task, another center's case, ...)."""

    reason = "PERMISSION_DENIED"


class AlreadyExists(DomainError):
    """A unique thing was created twice with different content."""

    reason = "ALREADY_EXISTS"


class Unavailable(DomainError):
    """A dependency is down for now; the caller may retry."""

    reason = "UNAVAILABLE"


class DataLoss(DomainError):
    """What we stored is gone or damaged (a document whose bytes no longer match their digest)."""

    reason = "DATA_LOSS"

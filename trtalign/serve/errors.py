"""Request errors of the server: each carries the HTTP status and a short machine-readable code."""

from __future__ import annotations

from trtalign.core.errors import ServeError


class RequestError(ServeError):
    """A request the server refuses; becomes ``{"error": {"code": ..., "message": ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


class OverloadedError(RequestError):
    """The batching queue is full (503); the client should retry later."""

    def __init__(self, message: str):
        super().__init__(503, "overloaded", message)


class ShuttingDownError(RequestError):
    """The server is draining for shutdown and takes no new work (503)."""

    def __init__(self, message: str = "server is shutting down"):
        super().__init__(503, "shutting_down", message)

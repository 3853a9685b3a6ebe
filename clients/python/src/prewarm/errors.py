"""Every error the SDK raises is a :class:`PrewarmError` carrying the server's ``code`` and ``message``.

The HTTP status picks the class (401/403 :class:`Unauthorized`, 404 :class:`NotFound`, 503
:class:`Unavailable`…); over a WebSocket, where there is no status, the server's ``code`` does.
A command that exits non-zero is *not* an error: :meth:`prewarm.Sandbox.exec` returns its result.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "PrewarmError",
    "InvalidRequest",
    "Unauthorized",
    "NotFound",
    "Conflict",
    "WarmFailed",
    "Timeout",
    "Unavailable",
    "ServerError",
]


class PrewarmError(Exception):
    """The base of every SDK error.

    ``code`` is the server's machine-readable code (``not_found``, ``unauthorized``,
    ``limit_above_max``…) or one the SDK sets for what happened on its side (``timeout``,
    ``warm_failed``, ``unreachable``, ``protocol``); ``message`` is for people; ``status`` is the
    HTTP status when there was one.
    """

    code: str
    message: str
    status: Optional[int]

    def __init__(self, code: str, message: str, *, status: Optional[int] = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.status = status

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status!r})"


class InvalidRequest(PrewarmError):
    """The server refused the request as malformed or out of bounds (400, 413, 422): a bad
    runtime reference, an unknown field, a limit above the server's maximum (``limit_above_max``)."""


class Unauthorized(PrewarmError):
    """The bearer token is missing or wrong (401, 403). Set ``token=`` or ``PREWARM_TOKEN``."""


class NotFound(PrewarmError):
    """No such sandbox, runtime or tag (404)."""


class Conflict(PrewarmError):
    """The resource is not in a state that allows the request (409), e.g. exec on a sandbox whose
    warm failed (``not_ready``)."""


class WarmFailed(PrewarmError):
    """Warming the sandbox's runtime failed: ``step`` is where (``warm`` for a failing warm
    command, ``fetch``, ``manifest``…), ``reason`` what the server said (a warm command's stderr
    and exit status)."""

    step: str
    reason: str
    sandbox_id: Optional[str]
    runtime: Optional[str]

    def __init__(
        self,
        step: str,
        reason: str,
        *,
        sandbox_id: Optional[str] = None,
        runtime: Optional[str] = None,
    ) -> None:
        what = f"warming {runtime}" if runtime else "warming"
        super().__init__("warm_failed", f"{what} failed in step {step}: {reason}")
        self.step = step
        self.reason = reason
        self.sandbox_id = sandbox_id
        self.runtime = runtime


class Timeout(PrewarmError):
    """A deadline passed: the client's (``timeout=`` of a create or an exec, an HTTP timeout) or
    the server's request timeout (504)."""


class Unavailable(PrewarmError):
    """The origin cannot serve now (503, 502), or cannot be reached at all (``unreachable``).
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    retry_after: Optional[float]

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(code, message, status=status)
        self.retry_after = retry_after


class ServerError(PrewarmError):
    """The origin failed (500 and other 5xx), or answered something the SDK cannot read
    (``protocol``)."""

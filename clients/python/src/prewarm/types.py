"""The API's wire types as frozen dataclasses (the origin's are in ``shared/src/sandbox.rs``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from .errors import ServerError

__all__ = [
    "WarmFailure",
    "WarmProgress",
    "SandboxInfo",
    "WarmInfo",
    "WarmStats",
    "LimitHit",
    "ExecResult",
    "RunError",
    "RunResult",
    "SnapshotInfo",
]


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ServerError("protocol", f"expected a JSON object for {what}, got {value!r:.200}")
    return value


def _get(d: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    v = d.get(key)
    # JSON numbers: an int is a fine float.
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ServerError("protocol", f"{what}: field {key!r} is {v!r:.100}, expected {kind.__name__}")
    return v


def _opt(d: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    return None if d.get(key) is None else _get(d, key, kind, what)


@dataclass(frozen=True)
class WarmFailure:
    """Why a warm failed: the step it failed in and the server's reason."""

    step: str
    reason: str

    @classmethod
    def from_json(cls, value: Any) -> "WarmFailure":
        d = _obj(value, "a warm failure")
        return cls(step=_get(d, "step", str, "error"), reason=_get(d, "reason", str, "error"))


@dataclass(frozen=True)
class WarmProgress:
    """Where a warm stands, as ``on_progress`` callbacks receive it.

    ``status`` is ``warming``, ``ready`` or ``failed``; ``step`` one of ``queued``, ``manifest``,
    ``fetch`` (or ``fetch_warmed``: another node's warmed runtime, no warm commands),
    ``materialise``, ``warm``, ``seal``, ``done``; ``progress`` goes from 0.0 to 1.0 and
    never back; ``estimated_ms`` is the server's estimate of the time left (``None`` once done);
    ``queue_position`` the jobs ahead in the warm queue (``None`` once running); ``error`` is set
    when ``status`` is ``failed``.
    """

    status: str
    progress: float
    step: str
    estimated_ms: Optional[int] = None
    queue_position: Optional[int] = None
    error: Optional[WarmFailure] = None

    @property
    def done(self) -> bool:
        """True once the warm is over (ready or failed)."""
        return self.status != "warming"

    @classmethod
    def from_json(cls, value: Any) -> "WarmProgress":
        d = _obj(value, "a warm state")
        what = "warm state"
        error = d.get("error")
        return cls(
            status=_get(d, "status", str, what),
            progress=_get(d, "progress", float, what),
            step=_get(d, "step", str, what),
            estimated_ms=_opt(d, "estimated_ms", int, what),
            queue_position=_opt(d, "queue_position", int, what),
            error=None if error is None else WarmFailure.from_json(error),
        )


@dataclass(frozen=True)
class SandboxInfo:
    """``POST /v1/sandboxes`` and ``GET /v1/sandboxes/{id}``: the sandbox and its warm state."""

    sandbox_id: str
    runtime: str
    digest: str
    user_id: str
    hot: bool
    """True when the runtime was already warm at creation."""
    state: WarmProgress

    @property
    def status(self) -> str:
        return self.state.status

    @classmethod
    def from_json(cls, value: Any) -> "SandboxInfo":
        d = _obj(value, "a sandbox")
        what = "sandbox"
        return cls(
            sandbox_id=_get(d, "sandbox_id", str, what),
            runtime=_get(d, "runtime", str, what),
            digest=_get(d, "digest", str, what),
            user_id=_get(d, "user_id", str, what),
            hot=_get(d, "hot", bool, what),
            state=WarmProgress.from_json(d),
        )


@dataclass(frozen=True)
class WarmInfo:
    """``POST /v1/warm``: the runtime, the digest its tag resolved to, and the warm's state."""

    runtime: str
    digest: str
    hot: bool
    state: WarmProgress

    @classmethod
    def from_json(cls, value: Any) -> "WarmInfo":
        d = _obj(value, "a warm")
        what = "warm"
        return cls(
            runtime=_get(d, "runtime", str, what),
            digest=_get(d, "digest", str, what),
            hot=_get(d, "hot", bool, what),
            state=WarmProgress.from_json(d),
        )


@dataclass(frozen=True)
class WarmStats:
    """``GET /v1/warm/stats``: counters since the origin started."""

    warms_started: int
    warms_succeeded: int
    warms_failed: int
    queued: int
    running: int
    warm_runtimes: int
    sandboxes: int
    evictions: int

    @classmethod
    def from_json(cls, value: Any) -> "WarmStats":
        d = _obj(value, "warm stats")
        names = (
            "warms_started",
            "warms_succeeded",
            "warms_failed",
            "queued",
            "running",
            "warm_runtimes",
            "sandboxes",
            "evictions",
        )
        v: Dict[str, int] = {n: _get(d, n, int, "stats") for n in names}
        return cls(**v)


@dataclass(frozen=True)
class LimitHit:
    """A resource limit that ended a command: ``limit`` (``cpu_secs``, ``file_bytes``), the
    ``value`` it ran under, and a ``message`` for people."""

    limit: str
    value: int
    message: str

    @classmethod
    def from_json(cls, value: Any) -> "LimitHit":
        d = _obj(value, "a limit")
        return cls(
            limit=_get(d, "limit", str, "limit"),
            value=_get(d, "value", int, "limit"),
            message=_get(d, "message", str, "limit"),
        )


@dataclass(frozen=True)
class ExecResult:
    """What a command did. A non-zero exit is a result, not an exception.

    ``exit_code`` is ``None`` when a signal ended the command (``signal`` names it), including
    the server's timeout (``timed_out``). Output is UTF-8 (invalid bytes replaced) and capped per
    stream by the server; ``truncated`` says when the cap cut it. ``limit`` is set when a
    resource limit killed the command.
    """

    exit_code: Optional[int]
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    truncated: bool = False
    signal: Optional[str] = None
    limit: Optional[LimitHit] = None

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0

    @classmethod
    def from_json(cls, value: Any) -> "ExecResult":
        d = _obj(value, "an exec result")
        what = "exec result"
        limit = d.get("limit")
        return cls(
            exit_code=_opt(d, "exit_code", int, what),
            stdout=_get(d, "stdout", str, what),
            stderr=_get(d, "stderr", str, what),
            duration_ms=_get(d, "duration_ms", int, what),
            timed_out=_get(d, "timed_out", bool, what),
            truncated=_get(d, "truncated", bool, what),
            signal=_opt(d, "signal", str, what),
            limit=None if limit is None else LimitHit.from_json(limit),
        )


@dataclass(frozen=True)
class RunError:
    """An exception the code raised: its type's name, its message, the formatted traceback."""

    name: str
    value: str
    traceback: str

    @classmethod
    def from_json(cls, value: Any) -> "RunError":
        d = _obj(value, "a run error")
        what = "run error"
        return cls(
            name=_get(d, "name", str, what),
            value=_get(d, "value", str, what),
            traceback=_get(d, "traceback", str, what),
        )


@dataclass(frozen=True)
class RunResult:
    """What code run in the sandbox's interpreter did. An exception is a result (``error``), so
    are a timeout (``timed_out``) and the interpreter dying (``died``, ``signal``): after those
    two the interpreter's state is gone and the next call starts a fresh one.

    ``result`` is the ``repr()`` of the last expression's value (``None`` when there was none
    or it was ``None``). ``fresh_interpreter`` says this call started a new interpreter.
    """

    stdout: str
    stderr: str
    duration_ms: int
    result: Optional[str] = None
    error: Optional[RunError] = None
    timed_out: bool = False
    died: Optional[str] = None
    signal: Optional[str] = None
    limit: Optional[LimitHit] = None
    truncated: bool = False
    fresh_interpreter: bool = False

    @property
    def ok(self) -> bool:
        """True when the code ran to its end without an exception."""
        return self.error is None and not self.timed_out and self.died is None

    @classmethod
    def from_json(cls, value: Any) -> "RunResult":
        d = _obj(value, "a run result")
        what = "run result"
        error, limit = d.get("error"), d.get("limit")
        return cls(
            stdout=_get(d, "stdout", str, what),
            stderr=_get(d, "stderr", str, what),
            duration_ms=_get(d, "duration_ms", int, what),
            result=_opt(d, "result", str, what),
            error=None if error is None else RunError.from_json(error),
            timed_out=_get(d, "timed_out", bool, what),
            died=_opt(d, "died", str, what),
            signal=_opt(d, "signal", str, what),
            limit=None if limit is None else LimitHit.from_json(limit),
            truncated=_get(d, "truncated", bool, what),
            fresh_interpreter=_get(d, "fresh_interpreter", bool, what),
        )


@dataclass(frozen=True)
class SnapshotInfo:
    """``POST /v1/sandboxes/{id}/snapshot``: a content-addressed snapshot of the workspace, and
    what taking it cost (only new or changed files are read and stored)."""

    snapshot: str
    """``sha256:…``: create a sandbox from it with :meth:`Sandbox.from_snapshot`."""
    parent: Optional[str]
    """The sandbox's previous snapshot, or ``None`` when the sandbox was fresh."""
    runtime: str
    """The digest of the runtime the sandbox ran on."""
    files: int
    bytes_total: int
    new_blocks: int
    reused_blocks: int
    bytes_new: int
    duration_ms: int
    label: Optional[str]

    @classmethod
    def from_json(cls, value: Any) -> "SnapshotInfo":
        d = _obj(value, "a snapshot")
        what = "snapshot"
        return cls(
            snapshot=_get(d, "snapshot", str, what),
            parent=_opt(d, "parent", str, what),
            runtime=_get(d, "runtime", str, what),
            files=_get(d, "files", int, what),
            bytes_total=_get(d, "bytes_total", int, what),
            new_blocks=_get(d, "new_blocks", int, what),
            reused_blocks=_get(d, "reused_blocks", int, what),
            bytes_new=_get(d, "bytes_new", int, what),
            duration_ms=_get(d, "duration_ms", int, what),
            label=_opt(d, "label", str, what),
        )

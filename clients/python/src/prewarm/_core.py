"""What the sync and async halves share: configuration, request bodies, error mapping."""

from __future__ import annotations

import json
import os
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from . import errors
from .errors import PrewarmError
from .types import SandboxInfo, WarmProgress

__version__ = "0.1.0"

DEFAULT_URL = "http://127.0.0.1:7070"
#: Seconds an ordinary API call may take.
DEFAULT_TIMEOUT = 30.0
#: Seconds ``Sandbox.create`` waits for a cold runtime to warm, by default.
DEFAULT_CREATE_TIMEOUT = 600.0
#: Seconds a snapshot, fork, pause or resume call may take (a large workspace is read whole
#: the first time).
SNAPSHOT_TIMEOUT = 300.0
#: Extra seconds the client waits for an exec beyond the command's own timeout.
EXEC_GRACE = 30.0
#: The client's wait for an exec without a timeout: the origin's request timeout (300 s) and then some.
EXEC_DEFAULT_WAIT = 310.0
#: Seconds between WebSocket pings (the origin answers them on the events and exec streams).
WS_PING_INTERVAL = 20.0
#: Largest WebSocket message accepted (an exec result carries up to 1 MiB of each stream, escaped).
WS_MAX_MESSAGE = 64 << 20

ProgressCallback = Callable[[WarmProgress], Any]
OutputCallback = Callable[[str], Any]
Command = Union[str, Sequence[str]]


def base_url(value: Optional[str]) -> str:
    url = value or os.environ.get("PREWARM_URL") or DEFAULT_URL
    return url.rstrip("/")


def token(value: Optional[str]) -> Optional[str]:
    if value is not None:
        return value or None
    return os.environ.get("PREWARM_TOKEN") or None


def headers(tok: Optional[str]) -> Dict[str, str]:
    h = {"user-agent": f"prewarm-python/{__version__}"}
    if tok:
        h["authorization"] = f"Bearer {tok}"
    return h


def ws_url(base: str, path: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + path
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + path
    raise errors.InvalidRequest("bad_url", f"base_url must start with http:// or https://, got {base!r}")


def sandbox_path(sandbox_id: str, rest: str = "") -> str:
    return f"/v1/sandboxes/{quote(sandbox_id, safe='')}{rest}"


def tag_path(runtime: str) -> str:
    """``/v1/runtimes/{name}/tags/{tag}`` of ``name:tag``."""
    name, sep, tag = runtime.partition(":")
    if not sep or not name or not tag:
        raise errors.InvalidRequest("bad_request", f"expected name:tag, got {runtime!r}")
    return f"/v1/runtimes/{quote(name, safe='')}/tags/{quote(tag, safe='')}"


def create_body(
    runtime: str,
    *,
    user_id: Optional[str],
    context: Any,
    env: Optional[Mapping[str, str]],
    priority: str,
    network: bool,
    limits: Optional[Mapping[str, int]],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"runtime": runtime, "priority": priority}
    # Left out, the origin decides: a sandbox token's own user, else "default".
    if user_id is not None:
        body["user_id"] = user_id
    if env:
        body["env"] = dict(env)
    if context is not None:
        body["context"] = context
    if network:
        body["network"] = True
    if limits:
        body["limits"] = dict(limits)
    return body


def snapshot_body(label: Optional[str]) -> Dict[str, Any]:
    return {} if label is None else {"label": label}


def fork_body(count: int) -> Dict[str, Any]:
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise errors.InvalidRequest("bad_request", f"fork count must be a positive integer, got {count!r}")
    return {"count": count}


def from_snapshot_body(
    snapshot: str, *, user_id: Optional[str], env: Optional[Mapping[str, str]], network: bool
) -> Dict[str, Any]:
    if not snapshot.startswith("sha256:"):
        raise errors.InvalidRequest("bad_digest", f"a snapshot is a sha256:<hex> digest, got {snapshot!r}")
    body: Dict[str, Any] = {"snapshot": snapshot}
    if user_id is not None:
        body["user_id"] = user_id
    if env:
        body["env"] = dict(env)
    if network:
        body["network"] = True
    return body


def forked_infos(value: Any) -> List[SandboxInfo]:
    """The sandboxes of a ``POST …/fork`` answer."""
    items = value.get("sandboxes") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise errors.ServerError("protocol", f"fork: no sandboxes in {value!r:.200}")
    return [SandboxInfo.from_json(i) for i in items]


def paused_snapshot(value: Any) -> str:
    """The snapshot of a ``POST …/pause`` answer."""
    snap = value.get("snapshot") if isinstance(value, dict) else None
    if not isinstance(snap, str):
        raise errors.ServerError("protocol", f"pause: no snapshot in {value!r:.200}")
    return snap


def exec_body(
    cmd: Command,
    *,
    env: Optional[Mapping[str, str]],
    timeout: Optional[float],
    limits: Optional[Mapping[str, int]],
) -> Dict[str, Any]:
    """A string is a shell command (``/bin/sh -c``); a sequence is the argv as given."""
    if isinstance(cmd, str):
        argv = ["/bin/sh", "-c", cmd]
    else:
        argv = list(cmd)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise errors.InvalidRequest("bad_request", "cmd must be a string or a non-empty list of strings")
    body: Dict[str, Any] = {"cmd": argv}
    if env:
        body["env"] = dict(env)
    if timeout is not None:
        if timeout <= 0:
            raise errors.InvalidRequest("bad_request", "timeout must be positive")
        body["timeout_ms"] = max(1, int(timeout * 1000))
    if limits:
        body["limits"] = dict(limits)
    return body


def run_body(code: str, *, language: str, timeout: Optional[float]) -> Dict[str, Any]:
    """``POST /v1/sandboxes/{id}/run``'s body."""
    if not isinstance(code, str):
        raise errors.InvalidRequest("bad_request", "code must be a string")
    body: Dict[str, Any] = {"code": code, "language": language}
    if timeout is not None:
        if timeout <= 0:
            raise errors.InvalidRequest("bad_request", "timeout must be positive")
        body["timeout_ms"] = max(1, int(timeout * 1000))
    return body


def exec_wait(timeout: Optional[float]) -> float:
    """How long the client waits for an exec's answer."""
    return EXEC_DEFAULT_WAIT if timeout is None else timeout + EXEC_GRACE


def retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


_BY_CODE: Dict[str, type] = {
    "unauthorized": errors.Unauthorized,
    "forbidden": errors.Unauthorized,
    "not_found": errors.NotFound,
    "not_ready": errors.Conflict,
    "missing_blocks": errors.Conflict,
    "unavailable": errors.Unavailable,
    "timeout": errors.Timeout,
    "internal": errors.ServerError,
    "bad_request": errors.InvalidRequest,
    "bad_json": errors.InvalidRequest,
    "bad_limit": errors.InvalidRequest,
    "limit_above_max": errors.InvalidRequest,
    "too_large": errors.InvalidRequest,
    "digest_mismatch": errors.InvalidRequest,
    "bad_manifest": errors.InvalidRequest,
    "method_not_allowed": errors.InvalidRequest,
}


def _by_status(status: int) -> type:
    if status in (401, 403):
        return errors.Unauthorized
    if status == 404:
        return errors.NotFound
    if status == 409:
        return errors.Conflict
    if status in (502, 503):
        return errors.Unavailable
    if status == 504:
        return errors.Timeout
    if status >= 500:
        return errors.ServerError
    if status >= 400:
        return errors.InvalidRequest
    return errors.ServerError


def error_from_code(
    code: str,
    message: str,
    *,
    status: Optional[int] = None,
    retry: Optional[float] = None,
) -> PrewarmError:
    """The error for a server ``code`` (and HTTP ``status`` when there is one; it decides)."""
    cls = _by_status(status) if status is not None else _BY_CODE.get(code, PrewarmError)
    if cls is errors.Unavailable:
        return errors.Unavailable(code, message, status=status, retry_after=retry)
    err: PrewarmError = cls(code, message, status=status)
    return err


def error_body(content: bytes) -> Optional[Mapping[str, Any]]:
    """The ``{"error":{"code","message"}}`` of a body, if it is one."""
    try:
        v = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(v, dict) and isinstance(v.get("error"), dict):
        e: Mapping[str, Any] = v["error"]
        if isinstance(e.get("code"), str):
            return e
    return None


def error_from_response(status: int, hdrs: Mapping[str, str], content: bytes, what: str) -> PrewarmError:
    """The typed error of a non-2xx answer. ``what`` names the request, for bodies that are not
    the API's error form (a proxy's page, an empty 504)."""
    e = error_body(content)
    if e is not None:
        code = str(e["code"])
        message = str(e.get("message") or code)
    else:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 502: "bad_gateway",
                503: "unavailable", 504: "timeout"}.get(status, f"http_{status}")
        text = content[:300].decode("utf-8", "replace").strip()
        message = f"{what}: HTTP {status}" + (f": {text}" if text else "")
    ra = None
    for k, v in hdrs.items():
        if k.lower() == "retry-after":
            ra = retry_after(v)
    return error_from_code(code, message, status=status, retry=ra)


def ws_error(message: Mapping[str, Any]) -> PrewarmError:
    """The error a WebSocket sent as ``{"error":{"code","message"}}``."""
    e = message.get("error")
    if not isinstance(e, dict):
        return errors.ServerError("protocol", f"unexpected message {message!r:.200}")
    code = str(e.get("code") or "error")
    return error_from_code(code, str(e.get("message") or code))


def warm_failed(info: SandboxInfo) -> errors.WarmFailed:
    err = info.state.error
    step, reason = (err.step, err.reason) if err else (info.state.step, "the server gave no reason")
    return errors.WarmFailed(step, reason, sandbox_id=info.sandbox_id, runtime=info.runtime)


def timeout_error(info: SandboxInfo, last: Optional[WarmProgress], waited: float) -> errors.Timeout:
    state = last or info.state
    where = f"step {state.step}, {state.progress:.0%}"
    if state.estimated_ms is not None:
        where += f", about {state.estimated_ms / 1000:.1f} s to go by the server's estimate"
    return errors.Timeout(
        "timeout",
        f"sandbox {info.sandbox_id} ({info.runtime}) was not ready after {waited:.1f} s ({where})",
    )


def parse_ws_json(raw: Union[str, bytes]) -> Mapping[str, Any]:
    try:
        v = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.ServerError("protocol", f"the server sent a message that is not JSON: {e}") from e
    if not isinstance(v, dict):
        raise errors.ServerError("protocol", f"the server sent {v!r:.200}, not a JSON object")
    return v


def poll_intervals() -> "PollIntervals":
    return PollIntervals()


class PollIntervals:
    """0.1 s, growing by half each time, up to 1 s."""

    def __init__(self) -> None:
        self.next = 0.1

    def take(self, remaining: Optional[float]) -> float:
        d = self.next
        self.next = min(1.0, self.next * 1.5)
        return d if remaining is None else max(0.0, min(d, remaining))

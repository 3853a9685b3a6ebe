"""The blocking API: :class:`Client` and :class:`Sandbox` (``httpx.Client`` and ``websockets.sync``)."""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Type, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from . import _core, errors
from ._files import Files
from ._core import Command, OutputCallback, ProgressCallback
from .types import ExecResult, RunResult, SandboxInfo, SnapshotInfo, WarmInfo, WarmProgress, WarmStats

__all__ = ["Client", "Sandbox"]

_C = TypeVar("_C", bound="Client")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="Sandbox")


class _NoStream(Exception):
    """The WebSocket could not be used (a proxy refused the upgrade, the stream broke): poll."""


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else deadline - time.monotonic()


class Client:
    """The origin's API: warming, stats, runtimes, and the sandboxes' plumbing.

    ``base_url`` defaults to ``$PREWARM_URL`` (else ``http://127.0.0.1:7070``), ``token`` to
    ``$PREWARM_TOKEN``. ``timeout`` is the seconds an ordinary call may take. One client can back
    many sandboxes (``Sandbox.create(..., client=c)``): they share its connections.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = _core.DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = _core.base_url(base_url)
        self.token = _core.token(token)
        self.timeout = timeout
        self._headers = _core.headers(self.token)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout)

    # -- plumbing -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        what = f"{method} {path}"
        try:
            resp = self._http.request(
                method,
                path,
                json=body,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TimeoutException as e:
            raise errors.Timeout("timeout", f"{what}: no answer from {self.base_url} in time ({e})") from e
        except httpx.TransportError as e:
            raise errors.Unavailable("unreachable", f"{what}: cannot reach {self.base_url}: {e}") from e
        if resp.status_code >= 400:
            raise _core.error_from_response(resp.status_code, resp.headers, resp.content, what)
        return resp

    def _json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError as e:
            raise errors.ServerError(
                "protocol", f"{resp.request.method} {resp.request.url.path}: answer is not JSON"
            ) from e

    def _ws(self, path: str) -> ClientConnection:
        """Opens a WebSocket; raises ``_NoStream`` when it cannot be used, a typed error when
        the server's refusal is definitive (401, 403, 404)."""
        try:
            return connect(
                _core.ws_url(self.base_url, path),
                additional_headers=self._headers,
                open_timeout=self.timeout,
                max_size=_core.WS_MAX_MESSAGE,
                compression=None,
                # The origin answers pings on every stream, so a quiet command keeps its socket.
                ping_interval=_core.WS_PING_INTERVAL,
            )
        except InvalidStatus as e:
            r = e.response
            if r.status_code in (401, 403, 404):
                raise _core.error_from_response(
                    r.status_code, dict(r.headers.raw_items()), bytes(r.body or b""), f"GET {path}"
                ) from e
            raise _NoStream(str(e)) from e
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as e:
            raise _NoStream(str(e)) from e

    # -- sandboxes ------------------------------------------------------------------------

    def create_sandbox_info(self, body: Mapping[str, Any]) -> SandboxInfo:
        """``POST /v1/sandboxes`` with a raw body; see :meth:`Sandbox.create` for the waiting kind."""
        return SandboxInfo.from_json(self._json(self._request("POST", "/v1/sandboxes", body=body)))

    def sandbox_info(self, sandbox_id: str) -> SandboxInfo:
        """``GET /v1/sandboxes/{id}``."""
        return SandboxInfo.from_json(self._json(self._request("GET", _core.sandbox_path(sandbox_id))))

    def delete_sandbox(self, sandbox_id: str) -> bool:
        """``DELETE /v1/sandboxes/{id}``: True if it was there, False if it was gone already."""
        try:
            self._request("DELETE", _core.sandbox_path(sandbox_id))
        except errors.NotFound:
            return False
        return True

    def watch_sandbox(self, sandbox_id: str, deadline: Optional[float] = None) -> Generator[WarmProgress, None, None]:
        """Every warm state of the sandbox from ``GET …/events`` (WebSocket), ending after
        ``ready`` or ``failed``. Raises ``_NoStream`` (internal) when the WebSocket is unusable."""
        path = _core.sandbox_path(sandbox_id, "/events")
        with self._ws(path) as ws:
            while True:
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return
                try:
                    raw = ws.recv(timeout=remaining)
                except TimeoutError:
                    return
                except ConnectionClosed:
                    raise _NoStream("the events stream closed before the warm finished")
                msg = _core.parse_ws_json(raw)
                if "status" not in msg and "error" in msg:
                    raise _core.ws_error(msg)
                state = WarmProgress.from_json(msg)
                yield state
                if state.done:
                    return

    def exec(
        self,
        sandbox_id: str,
        cmd: Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        limits: Optional[Mapping[str, int]] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> ExecResult:
        """Runs a command in a sandbox; see :meth:`Sandbox.exec`."""
        body = _core.exec_body(cmd, env=env, timeout=timeout, limits=limits)
        return self._live(sandbox_id, "/exec", body, timeout, on_stdout, on_stderr, ExecResult.from_json)

    def run_code(
        self,
        sandbox_id: str,
        code: str,
        *,
        language: str = "python",
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> RunResult:
        """Runs code in a sandbox's interpreter; see :meth:`Sandbox.run_code`."""
        body = _core.run_body(code, language=language, timeout=timeout)
        return self._live(sandbox_id, "/run", body, timeout, on_stdout, on_stderr, RunResult.from_json)

    def _live(
        self,
        sandbox_id: str,
        route: str,
        body: Dict[str, Any],
        timeout: Optional[float],
        on_stdout: Optional[OutputCallback],
        on_stderr: Optional[OutputCallback],
        parse: Callable[[Any], _R],
    ) -> _R:
        """``POST`` to ``route`` (``/exec``, ``/run``), or with a callback the exec WebSocket,
        which streams output and takes either request."""
        wait = _core.exec_wait(timeout)
        if on_stdout is not None or on_stderr is not None:
            try:
                ws = self._ws(_core.sandbox_path(sandbox_id, "/exec"))
            except _NoStream:
                ws = None
            if ws is not None:
                with ws:
                    return self._exec_stream(ws, body, wait, on_stdout, on_stderr, parse)
        resp = self._request("POST", _core.sandbox_path(sandbox_id, route), body=body, timeout=wait)
        result = parse(self._json(resp))
        # No live stream (the WebSocket was refused on the way): the output, all at once.
        out = (getattr(result, "stdout", ""), getattr(result, "stderr", ""))
        if on_stdout is not None and out[0]:
            on_stdout(out[0])
        if on_stderr is not None and out[1]:
            on_stderr(out[1])
        return result

    def _exec_stream(
        self,
        ws: ClientConnection,
        body: Dict[str, Any],
        wait: float,
        on_stdout: Optional[OutputCallback],
        on_stderr: Optional[OutputCallback],
        parse: Callable[[Any], _R],
    ) -> _R:
        deadline = time.monotonic() + wait
        try:
            ws.send(json.dumps(body))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                msg = _core.parse_ws_json(ws.recv(timeout=remaining))
                stream = msg.get("stream")
                if stream is not None:
                    data = msg.get("data")
                    if not isinstance(data, str):
                        raise errors.ServerError("protocol", f"output piece without text: {msg!r:.200}")
                    cb = on_stdout if stream == "stdout" else on_stderr if stream == "stderr" else None
                    if cb is not None:
                        cb(data)
                elif "result" in msg:
                    return parse(msg["result"])
                else:
                    raise _core.ws_error(msg)
        except TimeoutError as e:
            raise errors.Timeout("timeout", f"the command gave no result within {wait:.0f} s") from e
        except ConnectionClosed as e:
            raise errors.ServerError("protocol", f"the exec stream closed before the result: {e}") from e

    # -- snapshots, forks, pause and resume ----------------------------------------------

    def snapshot_sandbox(self, sandbox_id: str, *, label: Optional[str] = None) -> SnapshotInfo:
        """``POST /v1/sandboxes/{id}/snapshot``; see :meth:`Sandbox.snapshot`."""
        path = _core.sandbox_path(sandbox_id, "/snapshot")
        resp = self._request("POST", path, body=_core.snapshot_body(label), timeout=_core.SNAPSHOT_TIMEOUT)
        return SnapshotInfo.from_json(self._json(resp))

    def fork_sandbox(self, sandbox_id: str, count: int) -> List[SandboxInfo]:
        """``POST /v1/sandboxes/{id}/fork``: the new sandboxes, as created (maybe still warming)."""
        path = _core.sandbox_path(sandbox_id, "/fork")
        resp = self._request("POST", path, body=_core.fork_body(count), timeout=_core.SNAPSHOT_TIMEOUT)
        return _core.forked_infos(self._json(resp))

    def pause_sandbox(self, sandbox_id: str) -> str:
        """``POST /v1/sandboxes/{id}/pause``: the snapshot the paused sandbox resumes from."""
        path = _core.sandbox_path(sandbox_id, "/pause")
        resp = self._request("POST", path, timeout=_core.SNAPSHOT_TIMEOUT)
        return _core.paused_snapshot(self._json(resp))

    def resume_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """``POST /v1/sandboxes/{id}/resume``: the sandbox again, under its id (maybe warming)."""
        path = _core.sandbox_path(sandbox_id, "/resume")
        resp = self._request("POST", path, timeout=_core.SNAPSHOT_TIMEOUT)
        return SandboxInfo.from_json(self._json(resp))

    # -- warming, stats, runtimes ---------------------------------------------------------

    def warm(self, runtime: str, *, priority: str = "normal") -> WarmInfo:
        """``POST /v1/warm``: starts warming ``runtime`` (``name:tag`` or a digest) on the node
        without a sandbox. ``hot`` says it was warm already; otherwise ``state`` is the warm's."""
        body = {"runtime": runtime, "priority": priority}
        return WarmInfo.from_json(self._json(self._request("POST", "/v1/warm", body=body)))

    def stats(self) -> WarmStats:
        """``GET /v1/warm/stats``."""
        return WarmStats.from_json(self._json(self._request("GET", "/v1/warm/stats")))

    def resolve(self, runtime: str) -> str:
        """The manifest digest ``name:tag`` points to now (``GET /v1/runtimes/{name}/tags/{tag}``)."""
        path = _core.tag_path(runtime)
        body = self._json(self._request("GET", path))
        digest = body.get("digest") if isinstance(body, dict) else None
        if not isinstance(digest, str):
            raise errors.ServerError("protocol", f"GET {path}: no digest in {body!r:.200}")
        return digest

    def healthy(self) -> bool:
        """True when ``/healthz`` answers 200."""
        try:
            self._request("GET", "/healthz")
        except errors.PrewarmError:
            return False
        return True

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class Sandbox:
    """A sandbox on a prewarm origin. Make one with :meth:`create` (or :meth:`connect` to one
    that exists); use it as a context manager to kill it on exit::

        with Sandbox.create("python-data:v1", on_progress=print) as sb:
            print(sb.exec("python -c 'print(1 + 1)'").stdout)
    """

    def __init__(self, info: SandboxInfo, client: Client, *, owns_client: bool) -> None:
        self.info = info
        self.client = client
        self._owns_client = owns_client
        self._killed = False

    def _alive(self) -> None:
        if self._killed:
            raise errors.NotFound("not_found", f"sandbox {self.id} was killed by this handle")

    @property
    def id(self) -> str:
        return self.info.sandbox_id

    @property
    def runtime(self) -> str:
        return self.info.runtime

    @property
    def digest(self) -> str:
        return self.info.digest

    @property
    def hot(self) -> bool:
        """True when the runtime was warm already when the sandbox was created."""
        return self.info.hot

    @property
    def files(self) -> Files:
        """The workspace's files: ``write``, ``read``, ``list``, ``remove``, ``upload_dir``, ``download_dir``."""
        return Files(self.client, self.id, self._alive)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, runtime={self.runtime!r}, status={self.info.status!r})"

    @classmethod
    def create(
        cls: Type[_S],
        runtime: str,
        *,
        user_id: Optional[str] = None,
        context: Any = None,
        env: Optional[Mapping[str, str]] = None,
        priority: str = "normal",
        network: bool = False,
        limits: Optional[Mapping[str, int]] = None,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[Client] = None,
    ) -> _S:
        """Creates a sandbox of ``runtime`` (``name:tag`` or ``sha256:…``) and waits until it is ready.

        A hot runtime is ready at once. A cold one warms on the server first: ``on_progress``
        gets every new :class:`~prewarm.WarmProgress` (status, step, progress 0-1, estimate),
        from the events WebSocket or, where that is unusable, by polling; the last one it gets
        is ``ready`` (progress 1.0) or ``failed``. ``timeout`` bounds the whole wait in seconds
        (``None``: no bound).

        ``context`` reaches the sandbox as ``$PREWARM_CONTEXT`` and ``.prewarm/context.json``;
        ``env`` is added to the runtime's; ``priority`` is ``low``, ``normal`` or ``high``;
        ``network`` gives commands the host's network; ``limits`` lowers resource limits
        (``memory_bytes``, ``cpu_secs``, ``file_bytes``, ``open_files``).

        Raises :class:`~prewarm.errors.WarmFailed` (with ``step`` and ``reason``) when warming
        fails and :class:`~prewarm.errors.Timeout` when the deadline passes; either way the
        sandbox is deleted. Other errors: :class:`~prewarm.errors.NotFound` (unknown runtime),
        :class:`~prewarm.errors.Unauthorized`, :class:`~prewarm.errors.InvalidRequest`,
        :class:`~prewarm.errors.Unavailable`.
        """
        body = _core.create_body(
            runtime,
            user_id=user_id,
            context=context,
            env=env,
            priority=priority,
            network=network,
            limits=limits,
        )
        return cls._started(
            lambda c: c.create_sandbox_info(body), on_progress, timeout, base_url, token, client
        )

    @classmethod
    def from_snapshot(
        cls: Type[_S],
        snapshot: str,
        *,
        user_id: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        network: bool = False,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[Client] = None,
    ) -> _S:
        """A new sandbox whose workspace is ``snapshot`` (``sha256:…``, from :meth:`snapshot`),
        on the runtime the snapshot records, and waits until it is ready as :meth:`create` does.
        On a node that holds the snapshot's blocks the clone shares them (copy-on-write); on any
        other node they are fetched through the tiers. Raises
        :class:`~prewarm.errors.NotFound` for a snapshot this user neither owns nor was shared."""
        body = _core.from_snapshot_body(snapshot, user_id=user_id, env=env, network=network)
        return cls._started(
            lambda c: c.create_sandbox_info(body), on_progress, timeout, base_url, token, client
        )

    @classmethod
    def resume(
        cls: Type[_S],
        sandbox_id: str,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[Client] = None,
    ) -> _S:
        """Resumes a sandbox :meth:`pause` stopped, under the same id, on this origin's node
        (whichever node paused it), with its workspace as it was; waits until it is ready."""
        return cls._started(
            lambda c: c.resume_sandbox(sandbox_id), on_progress, timeout, base_url, token, client
        )

    @classmethod
    def _started(
        cls: Type[_S],
        start: Callable[[Client], SandboxInfo],
        on_progress: Optional[ProgressCallback],
        timeout: Optional[float],
        base_url: Optional[str],
        token: Optional[str],
        client: Optional[Client],
    ) -> _S:
        """``start`` on a client (``client``, else a new one this handle owns), then waits for
        ready; on any failure the sandbox is deleted and an owned client closed."""
        owns = client is None
        c = client if client is not None else Client(base_url, token)
        try:
            sb = cls(start(c), c, owns_client=owns)
            try:
                sb.wait_ready(on_progress=on_progress, timeout=timeout)
            except BaseException:
                # Warm failed, deadline passed, a callback raised, interrupted: the caller
                # never gets a handle, so nothing else would delete the sandbox.
                try:
                    c.delete_sandbox(sb.id)
                except errors.PrewarmError:
                    pass
                raise
        except BaseException:
            if owns:
                c.close()
            raise
        return sb

    @classmethod
    def connect(
        cls: Type[_S],
        sandbox_id: str,
        *,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[Client] = None,
    ) -> _S:
        """A handle on an existing sandbox (it may still be warming: see :meth:`wait_ready`)."""
        owns = client is None
        c = client if client is not None else Client(base_url, token)
        try:
            return cls(c.sandbox_info(sandbox_id), c, owns_client=owns)
        except BaseException:
            if owns:
                c.close()
            raise

    def refresh(self) -> SandboxInfo:
        """Fetches the sandbox's state again (``GET /v1/sandboxes/{id}``)."""
        self._alive()
        self.info = self.client.sandbox_info(self.id)
        return self.info

    def wait_ready(
        self,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
    ) -> SandboxInfo:
        """Waits until the sandbox is ready (see :meth:`create`); raises ``WarmFailed`` or ``Timeout``."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        last: Optional[WarmProgress] = None

        def emit(state: WarmProgress) -> None:
            nonlocal last
            if state != last:
                last = state
                if on_progress is not None:
                    on_progress(state)

        emit(self.info.state)
        if not self.info.state.done:
            stream = self.client.watch_sandbox(self.id, deadline)
            try:
                while True:
                    try:
                        state = next(stream)
                    except (StopIteration, _NoStream):
                        break
                    emit(state)
            finally:
                stream.close()
            # Polling: the fallback when the stream was unusable or ended early, and the
            # authoritative last word either way.
            pause = _core.PollIntervals()
            while True:
                self.refresh()
                emit(self.info.state)
                if self.info.state.done:
                    break
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise _core.timeout_error(self.info, last, time.monotonic() - start)
                time.sleep(pause.take(remaining))
        if self.info.state.status == "failed":
            raise _core.warm_failed(self.info)
        return self.info

    def exec(
        self,
        cmd: Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        limits: Optional[Mapping[str, int]] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> ExecResult:
        """Runs ``cmd`` in the sandbox: a string runs under ``/bin/sh -c``, a list is the argv.

        The working directory is the sandbox's workspace; ``env`` is added to the sandbox's.
        ``timeout`` (seconds) is the command's: past it the server kills its process tree and
        the result says ``timed_out``. With ``on_stdout`` / ``on_stderr`` the output streams to
        them in pieces (text) as the command runs, over the exec WebSocket; without, it is one
        ``POST``. Either way the :class:`~prewarm.ExecResult` has all of it (up to the server's
        cap) and its ``exit_code``: a command that fails is a result, not an exception.
        """
        self._alive()
        return self.client.exec(
            self.id,
            cmd,
            env=env,
            timeout=timeout,
            limits=limits,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )

    def run_code(
        self,
        code: str,
        *,
        language: str = "python",
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> RunResult:
        """Runs ``code`` in the sandbox's long-lived interpreter of ``language`` (the runtime's
        ``meta.json`` declares it): state persists between calls, as in a notebook, and the
        last expression's ``repr()`` is the result's ``result``. An exception, a timeout
        (``timeout`` seconds) and the interpreter dying are results, not exceptions. With
        ``on_stdout`` / ``on_stderr`` the output streams to them as it comes."""
        self._alive()
        return self.client.run_code(
            self.id, code, language=language, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )

    def snapshot(self, *, label: Optional[str] = None) -> SnapshotInfo:
        """Takes a content-addressed snapshot of the workspace (the sandbox's processes are
        stopped for the moment it takes, then go on). Only files new or changed since the last
        snapshot are read and stored; its ``parent`` is that snapshot."""
        self._alive()
        return self.client.snapshot_sandbox(self.id, label=label)

    def fork(
        self,
        count: int = 1,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
    ) -> List["Sandbox"]:
        """``count`` new sandboxes, each starting from this one's workspace as it is now
        (snapshot, then copy-on-write clones), ready when returned. Each clone is a handle of
        its own: use it as a context manager or :meth:`kill` it. If any clone fails, all are
        deleted and the error raised."""
        self._alive()
        infos = self.client.fork_sandbox(self.id, count)
        clones = [self._sibling(i) for i in infos]
        try:
            for c in clones:
                c.wait_ready(on_progress=on_progress, timeout=timeout)
        except BaseException:
            for c in clones:
                try:
                    c.kill()
                except errors.PrewarmError:
                    pass
            raise
        return clones

    def _sibling(self: _S, info: SandboxInfo) -> _S:
        """A handle on another sandbox: on this one's client when it was given one, else on a
        client of its own (so closing this handle leaves it working)."""
        if self._owns_client:
            return type(self)(info, Client(self.client.base_url, self.client.token), owns_client=True)
        return type(self)(info, self.client, owns_client=False)

    def pause(self) -> str:
        """Snapshots the workspace and stops the sandbox, keeping its id: :meth:`resume` brings
        it back, on any node of this origin. Returns the snapshot. This handle is done after it
        (as after :meth:`kill`); its connections are closed."""
        self._alive()
        snap = self.client.pause_sandbox(self.id)
        self._killed = True
        self.close()
        return snap

    def kill(self) -> bool:
        """Deletes the sandbox and its workspace: True if it was there, False if it was gone
        already. Closes the connections this handle opened; using it afterwards raises
        :class:`~prewarm.errors.NotFound`."""
        if self._killed:
            return False
        gone = self.client.delete_sandbox(self.id)
        self._killed = True
        self.close()
        return gone

    def close(self) -> None:
        """Closes the connections this handle opened (the sandbox lives on; see :meth:`kill`)."""
        if self._owns_client:
            self.client.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            self.kill()
        except errors.PrewarmError:
            # Do not hide the error that ended the block behind a failed clean-up.
            if exc is None:
                raise
        finally:
            self.close()

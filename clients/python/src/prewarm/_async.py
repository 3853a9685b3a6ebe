"""The async API: :class:`AsyncClient` and :class:`AsyncSandbox` (``httpx.AsyncClient`` and
``websockets.asyncio``), the same methods as the sync ones, awaited. Callbacks may be plain
functions or coroutine functions."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from types import TracebackType
from typing import Any, AsyncGenerator, Awaitable, Callable, Dict, List, Mapping, Optional, Type, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from . import _core, errors
from ._files import AsyncFiles
from ._core import Command, OutputCallback, ProgressCallback
from .types import ExecResult, RunResult, SandboxInfo, SnapshotInfo, WarmInfo, WarmProgress, WarmStats

__all__ = ["AsyncClient", "AsyncSandbox"]

_C = TypeVar("_C", bound="AsyncClient")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="AsyncSandbox")


class _NoStream(Exception):
    """The WebSocket could not be used (a proxy refused the upgrade, the stream broke): poll."""


def _remaining(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else deadline - time.monotonic()


async def _call(cb: Any, arg: Any) -> None:
    r = cb(arg)
    if inspect.isawaitable(r):
        await r


class AsyncClient:
    """The async :class:`prewarm.Client`: ``await client.warm(...)``, ``await client.stats()``…"""

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
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout)

    # -- plumbing -------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        what = f"{method} {path}"
        try:
            resp = await self._http.request(
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

    async def _ws(self, path: str) -> ClientConnection:
        try:
            return await connect(
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
        except (InvalidHandshake, InvalidURI, OSError, asyncio.TimeoutError) as e:
            raise _NoStream(str(e)) from e

    # -- sandboxes ------------------------------------------------------------------------

    async def create_sandbox_info(self, body: Mapping[str, Any]) -> SandboxInfo:
        resp = await self._request("POST", "/v1/sandboxes", body=body)
        return SandboxInfo.from_json(self._json(resp))

    async def sandbox_info(self, sandbox_id: str) -> SandboxInfo:
        resp = await self._request("GET", _core.sandbox_path(sandbox_id))
        return SandboxInfo.from_json(self._json(resp))

    async def delete_sandbox(self, sandbox_id: str) -> bool:
        try:
            await self._request("DELETE", _core.sandbox_path(sandbox_id))
        except errors.NotFound:
            return False
        return True

    async def watch_sandbox(
        self, sandbox_id: str, deadline: Optional[float] = None
    ) -> AsyncGenerator[WarmProgress, None]:
        """Every warm state of the sandbox from ``GET …/events`` (WebSocket), ending after
        ``ready`` or ``failed``. Raises ``_NoStream`` (internal) when the WebSocket is unusable."""
        ws = await self._ws(_core.sandbox_path(sandbox_id, "/events"))
        try:
            while True:
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return
                try:
                    raw = await asyncio.wait_for(ws.recv(), remaining)
                except asyncio.TimeoutError:
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
        finally:
            await ws.close()

    async def exec(
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
        body = _core.exec_body(cmd, env=env, timeout=timeout, limits=limits)
        return await self._live(sandbox_id, "/exec", body, timeout, on_stdout, on_stderr, ExecResult.from_json)

    async def run_code(
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
        return await self._live(sandbox_id, "/run", body, timeout, on_stdout, on_stderr, RunResult.from_json)

    async def _live(
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
                ws = await self._ws(_core.sandbox_path(sandbox_id, "/exec"))
            except _NoStream:
                ws = None
            if ws is not None:
                try:
                    return await self._exec_stream(ws, body, wait, on_stdout, on_stderr, parse)
                finally:
                    await ws.close()
        resp = await self._request("POST", _core.sandbox_path(sandbox_id, route), body=body, timeout=wait)
        result = parse(self._json(resp))
        # No live stream (the WebSocket was refused on the way): the output, all at once.
        out = (getattr(result, "stdout", ""), getattr(result, "stderr", ""))
        if on_stdout is not None and out[0]:
            await _call(on_stdout, out[0])
        if on_stderr is not None and out[1]:
            await _call(on_stderr, out[1])
        return result

    async def _exec_stream(
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
            await ws.send(json.dumps(body))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                msg = _core.parse_ws_json(await asyncio.wait_for(ws.recv(), remaining))
                stream = msg.get("stream")
                if stream is not None:
                    data = msg.get("data")
                    if not isinstance(data, str):
                        raise errors.ServerError("protocol", f"output piece without text: {msg!r:.200}")
                    cb = on_stdout if stream == "stdout" else on_stderr if stream == "stderr" else None
                    if cb is not None:
                        await _call(cb, data)
                elif "result" in msg:
                    return parse(msg["result"])
                else:
                    raise _core.ws_error(msg)
        except asyncio.TimeoutError as e:
            raise errors.Timeout("timeout", f"the command gave no result within {wait:.0f} s") from e
        except ConnectionClosed as e:
            raise errors.ServerError("protocol", f"the exec stream closed before the result: {e}") from e

    # -- snapshots, forks, pause and resume ----------------------------------------------

    async def snapshot_sandbox(self, sandbox_id: str, *, label: Optional[str] = None) -> SnapshotInfo:
        """See :meth:`prewarm.Client.snapshot_sandbox`."""
        path = _core.sandbox_path(sandbox_id, "/snapshot")
        resp = await self._request("POST", path, body=_core.snapshot_body(label), timeout=_core.SNAPSHOT_TIMEOUT)
        return SnapshotInfo.from_json(self._json(resp))

    async def fork_sandbox(self, sandbox_id: str, count: int) -> List[SandboxInfo]:
        """See :meth:`prewarm.Client.fork_sandbox`."""
        path = _core.sandbox_path(sandbox_id, "/fork")
        resp = await self._request("POST", path, body=_core.fork_body(count), timeout=_core.SNAPSHOT_TIMEOUT)
        return _core.forked_infos(self._json(resp))

    async def pause_sandbox(self, sandbox_id: str) -> str:
        """See :meth:`prewarm.Client.pause_sandbox`."""
        path = _core.sandbox_path(sandbox_id, "/pause")
        resp = await self._request("POST", path, timeout=_core.SNAPSHOT_TIMEOUT)
        return _core.paused_snapshot(self._json(resp))

    async def resume_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """See :meth:`prewarm.Client.resume_sandbox`."""
        path = _core.sandbox_path(sandbox_id, "/resume")
        resp = await self._request("POST", path, timeout=_core.SNAPSHOT_TIMEOUT)
        return SandboxInfo.from_json(self._json(resp))

    # -- warming, stats, runtimes ---------------------------------------------------------

    async def warm(self, runtime: str, *, priority: str = "normal") -> WarmInfo:
        body = {"runtime": runtime, "priority": priority}
        return WarmInfo.from_json(self._json(await self._request("POST", "/v1/warm", body=body)))

    async def stats(self) -> WarmStats:
        return WarmStats.from_json(self._json(await self._request("GET", "/v1/warm/stats")))

    async def resolve(self, runtime: str) -> str:
        path = _core.tag_path(runtime)
        body = self._json(await self._request("GET", path))
        digest = body.get("digest") if isinstance(body, dict) else None
        if not isinstance(digest, str):
            raise errors.ServerError("protocol", f"GET {path}: no digest in {body!r:.200}")
        return digest

    async def healthy(self) -> bool:
        try:
            await self._request("GET", "/healthz")
        except errors.PrewarmError:
            return False
        return True

    # -- lifetime -------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()


class AsyncSandbox:
    """The async :class:`prewarm.Sandbox`::

        async with await AsyncSandbox.create("python-data:v1", on_progress=print) as sb:
            print((await sb.exec("python -c 'print(1 + 1)'")).stdout)
    """

    def __init__(self, info: SandboxInfo, client: AsyncClient, *, owns_client: bool) -> None:
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
        return self.info.hot

    @property
    def files(self) -> AsyncFiles:
        """The workspace's files: ``write``, ``read``, ``list``, ``remove``, ``upload_dir``, ``download_dir``."""
        return AsyncFiles(self.client, self.id, self._alive)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, runtime={self.runtime!r}, status={self.info.status!r})"

    @classmethod
    async def create(
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
        client: Optional[AsyncClient] = None,
    ) -> _S:
        """See :meth:`prewarm.Sandbox.create`; ``on_progress`` may be a coroutine function."""
        body = _core.create_body(
            runtime,
            user_id=user_id,
            context=context,
            env=env,
            priority=priority,
            network=network,
            limits=limits,
        )
        return await cls._started(
            lambda c: c.create_sandbox_info(body), on_progress, timeout, base_url, token, client
        )

    @classmethod
    async def from_snapshot(
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
        client: Optional[AsyncClient] = None,
    ) -> _S:
        """See :meth:`prewarm.Sandbox.from_snapshot`."""
        body = _core.from_snapshot_body(snapshot, user_id=user_id, env=env, network=network)
        return await cls._started(
            lambda c: c.create_sandbox_info(body), on_progress, timeout, base_url, token, client
        )

    @classmethod
    async def resume(
        cls: Type[_S],
        sandbox_id: str,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[AsyncClient] = None,
    ) -> _S:
        """See :meth:`prewarm.Sandbox.resume`."""
        return await cls._started(
            lambda c: c.resume_sandbox(sandbox_id), on_progress, timeout, base_url, token, client
        )

    @classmethod
    async def _started(
        cls: Type[_S],
        start: Callable[[AsyncClient], Awaitable[SandboxInfo]],
        on_progress: Optional[ProgressCallback],
        timeout: Optional[float],
        base_url: Optional[str],
        token: Optional[str],
        client: Optional[AsyncClient],
    ) -> _S:
        """See :meth:`prewarm.Sandbox._started`."""
        owns = client is None
        c = client if client is not None else AsyncClient(base_url, token)
        try:
            sb = cls(await start(c), c, owns_client=owns)
            try:
                await sb.wait_ready(on_progress=on_progress, timeout=timeout)
            except BaseException:
                # Warm failed, deadline passed, a callback raised, interrupted: the caller
                # never gets a handle, so nothing else would delete the sandbox.
                try:
                    await c.delete_sandbox(sb.id)
                except errors.PrewarmError:
                    pass
                raise
        except BaseException:
            if owns:
                await c.aclose()
            raise
        return sb

    @classmethod
    async def connect(
        cls: Type[_S],
        sandbox_id: str,
        *,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        client: Optional[AsyncClient] = None,
    ) -> _S:
        owns = client is None
        c = client if client is not None else AsyncClient(base_url, token)
        try:
            return cls(await c.sandbox_info(sandbox_id), c, owns_client=owns)
        except BaseException:
            if owns:
                await c.aclose()
            raise

    async def refresh(self) -> SandboxInfo:
        self._alive()
        self.info = await self.client.sandbox_info(self.id)
        return self.info

    async def wait_ready(
        self,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
    ) -> SandboxInfo:
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        last: Optional[WarmProgress] = None

        async def emit(state: WarmProgress) -> None:
            nonlocal last
            if state != last:
                last = state
                if on_progress is not None:
                    await _call(on_progress, state)

        await emit(self.info.state)
        if not self.info.state.done:
            stream = self.client.watch_sandbox(self.id, deadline)
            try:
                while True:
                    try:
                        state = await stream.__anext__()
                    except (StopAsyncIteration, _NoStream):
                        break
                    await emit(state)
            finally:
                await stream.aclose()
            pause = _core.PollIntervals()
            while True:
                await self.refresh()
                await emit(self.info.state)
                if self.info.state.done:
                    break
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise _core.timeout_error(self.info, last, time.monotonic() - start)
                await asyncio.sleep(pause.take(remaining))
        if self.info.state.status == "failed":
            raise _core.warm_failed(self.info)
        return self.info

    async def exec(
        self,
        cmd: Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        limits: Optional[Mapping[str, int]] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> ExecResult:
        """See :meth:`prewarm.Sandbox.exec`; the callbacks may be coroutine functions."""
        self._alive()
        return await self.client.exec(
            self.id,
            cmd,
            env=env,
            timeout=timeout,
            limits=limits,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )

    async def run_code(
        self,
        code: str,
        *,
        language: str = "python",
        timeout: Optional[float] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> RunResult:
        """See :meth:`prewarm.Sandbox.run_code`; the callbacks may be coroutine functions."""
        self._alive()
        return await self.client.run_code(
            self.id, code, language=language, timeout=timeout, on_stdout=on_stdout, on_stderr=on_stderr
        )

    async def snapshot(self, *, label: Optional[str] = None) -> SnapshotInfo:
        """See :meth:`prewarm.Sandbox.snapshot`."""
        self._alive()
        return await self.client.snapshot_sandbox(self.id, label=label)

    async def fork(
        self,
        count: int = 1,
        *,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = _core.DEFAULT_CREATE_TIMEOUT,
    ) -> List["AsyncSandbox"]:
        """See :meth:`prewarm.Sandbox.fork`; the clones warm concurrently."""
        self._alive()
        infos = await self.client.fork_sandbox(self.id, count)
        clones = [self._sibling(i) for i in infos]
        try:
            await asyncio.gather(*(c.wait_ready(on_progress=on_progress, timeout=timeout) for c in clones))
        except BaseException:
            for c in clones:
                try:
                    await c.kill()
                except errors.PrewarmError:
                    pass
            raise
        return clones

    def _sibling(self: _S, info: SandboxInfo) -> _S:
        """See :meth:`prewarm.Sandbox._sibling`."""
        if self._owns_client:
            return type(self)(info, AsyncClient(self.client.base_url, self.client.token), owns_client=True)
        return type(self)(info, self.client, owns_client=False)

    async def pause(self) -> str:
        """See :meth:`prewarm.Sandbox.pause`."""
        self._alive()
        snap = await self.client.pause_sandbox(self.id)
        self._killed = True
        await self.aclose()
        return snap

    async def kill(self) -> bool:
        """See :meth:`prewarm.Sandbox.kill`."""
        if self._killed:
            return False
        gone = await self.client.delete_sandbox(self.id)
        self._killed = True
        await self.aclose()
        return gone

    async def aclose(self) -> None:
        """Closes the connections this handle opened (the sandbox lives on; see :meth:`kill`)."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            await self.kill()
        except errors.PrewarmError:
            if exc is None:
                raise
        finally:
            await self.aclose()

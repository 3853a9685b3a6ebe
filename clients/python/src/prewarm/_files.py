"""A sandbox's files: ``sb.files.write/read/list/remove/upload_dir/download_dir``, sync and async.

Paths are relative to the sandbox's workspace (the directory commands run in); a leading
``/workspace/`` is accepted and dropped. The origin refuses ``..``, empty components and any
path that leads outside the workspace through a symlink.
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, List, Optional, Union
from urllib.parse import quote

import httpx

from . import _core, errors
from .errors import ServerError

if TYPE_CHECKING:
    from ._async import AsyncClient
    from ._sync import Client

__all__ = ["FileEntry", "Files", "AsyncFiles"]

#: What ``write`` takes: bytes, text (written as UTF-8), or a binary file object read in chunks.
FileData = Union[bytes, bytearray, memoryview, str, IO[bytes]]

#: Bytes read from a file object at a time.
CHUNK = 1 << 20
#: An archive up to this size is built in memory; a larger one spills to a temporary file.
SPOOL = 16 << 20
#: Seconds a transfer may go without progress.
TRANSFER_TIMEOUT = 300.0
#: The sandbox's view of its workspace, accepted as a prefix.
WORKSPACE = "/workspace"


@dataclass(frozen=True)
class FileEntry:
    """One entry of :meth:`Files.list`: ``type`` is ``file``, ``dir``, ``symlink`` or ``other``;
    ``mode`` the permission bits (``0o644``); ``mtime`` seconds since the epoch; ``target`` a
    symlink's target as stored."""

    name: str
    type: str
    size: int
    mode: int
    mtime: int
    target: Optional[str] = None

    @classmethod
    def from_json(cls, value: Any) -> "FileEntry":
        if not isinstance(value, dict):
            raise ServerError("protocol", f"expected a file entry, got {value!r:.200}")
        try:
            target = value.get("target")
            return cls(
                name=str(value["name"]),
                type=str(value["type"]),
                size=int(value["size"]),
                mode=int(value["mode"]),
                mtime=int(value["mtime"]),
                target=None if target is None else str(target),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ServerError("protocol", f"bad file entry {value!r:.200}: {e}") from e


def rel(path: Union[str, "os.PathLike[str]"], *, allow_root: bool = False) -> str:
    """The workspace-relative form of ``path``, percent-encoded for a URL."""
    p = os.fspath(path)
    if p == WORKSPACE or p.startswith(WORKSPACE + "/"):
        p = p[len(WORKSPACE) :].lstrip("/")
    elif p.startswith("/"):
        raise errors.InvalidRequest(
            "bad_path", f"path {p!r} is absolute: give it relative to the workspace (or under /workspace/)"
        )
    p = p.rstrip("/")
    if p in ("", "."):
        if allow_root:
            return ""
        raise errors.InvalidRequest("bad_path", "a file path is needed, not the workspace itself")
    return quote(p, safe="/")


def _files_url(sandbox_path: str, p: str) -> str:
    return f"{sandbox_path}/files/{p}" if p else f"{sandbox_path}/files"


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        b = f.read(CHUNK)
        if not b:
            return
        yield b


def _body(data: FileData) -> Union[bytes, Iterator[bytes]]:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "read"):
        return _chunks(data)
    raise errors.InvalidRequest("bad_request", f"cannot write a {type(data).__name__}: give bytes, str or a binary file")


def _mode_query(mode: Optional[int]) -> str:
    if mode is None:
        return ""
    if not 0 <= mode <= 0o777:
        raise errors.InvalidRequest("bad_mode", f"mode {mode:#o} is not a permission mode of at most 0o777")
    return f"?mode={mode:o}"


def _pack(local_dir: Path) -> IO[bytes]:
    """``local_dir``'s contents as a tar in a spooled temporary file, rewound."""
    if not local_dir.is_dir():
        raise errors.InvalidRequest("bad_request", f"{local_dir} is not a directory")
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (returned)

    def owned_by_sandbox(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for child in sorted(local_dir.iterdir()):
            tar.add(child, arcname=child.name, recursive=True, filter=owned_by_sandbox)
    out.seek(0)
    return out


def _inside(member: tarfile.TarInfo, dest: str) -> Optional[tarfile.TarInfo]:
    """The member if it extracts safely under ``dest``: files, directories and links whose
    target stays inside; links leading out are skipped, anything else is refused."""
    if member.issym() or member.islnk():
        target = os.path.normpath(os.path.join(dest, os.path.dirname(member.name), member.linkname))
        if os.path.isabs(member.linkname) or not target.startswith(dest.rstrip(os.sep) + os.sep):
            return None
    elif not (member.isfile() or member.isdir()):
        return None
    full = os.path.normpath(os.path.join(dest, member.name))
    if os.path.isabs(member.name) or not (full == dest or full.startswith(dest.rstrip(os.sep) + os.sep)):
        raise errors.ServerError("bad_archive", f"the archive holds {member.name!r}, outside the destination")
    return member


def _unpack(archive: IO[bytes], local_dir: Path) -> None:
    local_dir.mkdir(parents=True, exist_ok=True)
    dest = str(local_dir.resolve())
    try:
        with tarfile.open(fileobj=archive, mode="r:") as tar:
            members = [m for m in (_inside(m, dest) for m in tar.getmembers()) if m is not None]
            # Checked above; newer Pythons would otherwise apply (or warn about) a default filter.
            trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
            tar.extractall(dest, members=members, **trusted)  # type: ignore[arg-type]
    except tarfile.TarError as e:
        raise errors.ServerError("bad_archive", f"the sandbox's archive is cut short or corrupt: {e}") from e


def _entries(value: Any) -> List[FileEntry]:
    entries = value.get("entries") if isinstance(value, dict) else None
    if not isinstance(entries, list):
        raise ServerError("protocol", f"a listing without entries: {value!r:.200}")
    return [FileEntry.from_json(e) for e in entries]


def _transport(what: str, base: str, e: httpx.HTTPError) -> errors.PrewarmError:
    if isinstance(e, httpx.TimeoutException):
        return errors.Timeout("timeout", f"{what}: no progress from {base} in time ({e})")
    return errors.Unavailable("unreachable", f"{what}: cannot reach {base}: {e}")


class Files:
    """The files of one sandbox (``sb.files``)."""

    def __init__(self, client: "Client", sandbox_id: str, alive: Callable[[], None]) -> None:
        self._client = client
        self._base = _core.sandbox_path(sandbox_id)
        self._alive = alive

    def _send(self, method: str, url: str, content: Any = None) -> httpx.Response:
        self._alive()
        what = f"{method} {url}"
        c = self._client
        try:
            resp = c._http.request(method, url, content=content, timeout=TRANSFER_TIMEOUT)
        except httpx.HTTPError as e:
            raise _transport(what, c.base_url, e) from e
        if resp.status_code >= 400:
            raise _core.error_from_response(resp.status_code, resp.headers, resp.content, what)
        return resp

    def _download(self, url: str, sink: IO[bytes]) -> None:
        self._alive()
        what = f"GET {url}"
        c = self._client
        try:
            with c._http.stream("GET", url, timeout=TRANSFER_TIMEOUT) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _core.error_from_response(resp.status_code, resp.headers, resp.content, what)
                for chunk in resp.iter_bytes(CHUNK):
                    sink.write(chunk)
        except httpx.HTTPError as e:
            raise _transport(what, c.base_url, e) from e

    def write(self, path: str, data: FileData, *, mode: Optional[int] = None) -> int:
        """Writes ``data`` to ``path`` (making its directories), atomically: the file is whole
        or unchanged. A file object is streamed. ``mode`` e.g. ``0o755`` (default ``0o644``).
        Returns the bytes written. Over the sandbox's ``file_bytes`` limit: ``InvalidRequest``
        with code ``too_large``."""
        url = _files_url(self._base, rel(path)) + _mode_query(mode)
        r = self._send("PUT", url, _body(data))
        size = r.json().get("size") if r.content else None
        return int(size) if isinstance(size, int) else 0

    def read(self, path: str) -> bytes:
        """The bytes of the file at ``path``. ``NotFound`` if there is none."""
        buf = io.BytesIO()
        self._download(_files_url(self._base, rel(path)), buf)
        return buf.getvalue()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def list(self, path: str = "") -> List[FileEntry]:
        """The entries of directory ``path`` (default: the workspace), sorted by name."""
        url = _files_url(self._base, rel(path, allow_root=True)) + "?list"
        return _entries(self._send("GET", url).json())

    def remove(self, path: str) -> None:
        """Removes a file or symlink (never its target), or a directory and all in it."""
        self._send("DELETE", _files_url(self._base, rel(path)))

    def upload_dir(self, local_dir: Union[str, "os.PathLike[str]"], path: str = "") -> int:
        """Copies the contents of ``local_dir`` into directory ``path`` of the sandbox (default:
        the workspace), as one tar stream. Returns the number of entries written."""
        with _pack(Path(local_dir)) as archive:
            dest = rel(path, allow_root=True)
            url = f"{self._base}/files:upload" + (f"?dir={dest}" if dest else "")
            r = self._send("POST", url, _chunks(archive))
        n = r.json().get("entries")
        return int(n) if isinstance(n, int) else 0

    def download_dir(self, path: str, local_dir: Union[str, "os.PathLike[str]"]) -> None:
        """Copies directory ``path`` of the sandbox (``""``: the workspace) into ``local_dir``
        (made if missing). Files, directories and symlinks that stay inside are written;
        symlinks leading outside ``local_dir`` are skipped."""
        url = _files_url(self._base, rel(path, allow_root=True)) + "?archive=tar"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL) as archive:
            self._download(url, archive)
            archive.seek(0)
            _unpack(archive, Path(local_dir))


async def _achunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while True:
        b = await asyncio.to_thread(f.read, CHUNK)
        if not b:
            return
        yield b


class AsyncFiles:
    """The files of one :class:`~prewarm.AsyncSandbox` (``sb.files``), awaited."""

    def __init__(self, client: "AsyncClient", sandbox_id: str, alive: Callable[[], None]) -> None:
        self._client = client
        self._base = _core.sandbox_path(sandbox_id)
        self._alive = alive

    async def _send(self, method: str, url: str, content: Any = None) -> httpx.Response:
        self._alive()
        what = f"{method} {url}"
        c = self._client
        try:
            resp = await c._http.request(method, url, content=content, timeout=TRANSFER_TIMEOUT)
        except httpx.HTTPError as e:
            raise _transport(what, c.base_url, e) from e
        if resp.status_code >= 400:
            raise _core.error_from_response(resp.status_code, resp.headers, resp.content, what)
        return resp

    async def _download(self, url: str, sink: IO[bytes]) -> None:
        self._alive()
        what = f"GET {url}"
        c = self._client
        try:
            async with c._http.stream("GET", url, timeout=TRANSFER_TIMEOUT) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise _core.error_from_response(resp.status_code, resp.headers, resp.content, what)
                async for chunk in resp.aiter_bytes(CHUNK):
                    sink.write(chunk)
        except httpx.HTTPError as e:
            raise _transport(what, c.base_url, e) from e

    async def write(self, path: str, data: FileData, *, mode: Optional[int] = None) -> int:
        """See :meth:`Files.write`."""
        url = _files_url(self._base, rel(path)) + _mode_query(mode)
        body = _body(data)
        content: Any = body if isinstance(body, bytes) else _achunks(data)  # type: ignore[arg-type]
        r = await self._send("PUT", url, content)
        size = r.json().get("size") if r.content else None
        return int(size) if isinstance(size, int) else 0

    async def read(self, path: str) -> bytes:
        """See :meth:`Files.read`."""
        buf = io.BytesIO()
        await self._download(_files_url(self._base, rel(path)), buf)
        return buf.getvalue()

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def list(self, path: str = "") -> List[FileEntry]:
        """See :meth:`Files.list`."""
        url = _files_url(self._base, rel(path, allow_root=True)) + "?list"
        return _entries((await self._send("GET", url)).json())

    async def remove(self, path: str) -> None:
        """See :meth:`Files.remove`."""
        await self._send("DELETE", _files_url(self._base, rel(path)))

    async def upload_dir(self, local_dir: Union[str, "os.PathLike[str]"], path: str = "") -> int:
        """See :meth:`Files.upload_dir`."""
        archive = await asyncio.to_thread(_pack, Path(local_dir))
        with archive:
            dest = rel(path, allow_root=True)
            url = f"{self._base}/files:upload" + (f"?dir={dest}" if dest else "")
            r = await self._send("POST", url, _achunks(archive))
        n = r.json().get("entries")
        return int(n) if isinstance(n, int) else 0

    async def download_dir(self, path: str, local_dir: Union[str, "os.PathLike[str]"]) -> None:
        """See :meth:`Files.download_dir`."""
        url = _files_url(self._base, rel(path, allow_root=True)) + "?archive=tar"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL) as archive:
            await self._download(url, archive)
            archive.seek(0)
            await asyncio.to_thread(_unpack, archive, Path(local_dir))

"""The prewarm SDK: sandboxes on a prewarm origin, sync (:class:`Sandbox`, :class:`Client`) and
async (:class:`AsyncSandbox`, :class:`AsyncClient`). Errors are in :mod:`prewarm.errors`."""

from . import errors
from ._async import AsyncClient, AsyncSandbox
from ._core import __version__
from ._files import AsyncFiles, FileEntry, Files
from ._sync import Client, Sandbox
from .errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PrewarmError,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
    WarmFailed,
)
from .types import (
    ExecResult,
    LimitHit,
    RunError,
    RunResult,
    SandboxInfo,
    SnapshotInfo,
    WarmFailure,
    WarmInfo,
    WarmProgress,
    WarmStats,
)

__all__ = [
    "__version__",
    "errors",
    "Client",
    "Sandbox",
    "AsyncClient",
    "AsyncSandbox",
    "ExecResult",
    "FileEntry",
    "Files",
    "AsyncFiles",
    "LimitHit",
    "RunError",
    "RunResult",
    "SandboxInfo",
    "SnapshotInfo",
    "WarmFailure",
    "WarmInfo",
    "WarmProgress",
    "WarmStats",
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

"""Snapshots, forks, pause and resume through the SDK against the real origin, sync and async."""

from __future__ import annotations

import pytest

from prewarm import AsyncSandbox, Client, Sandbox, SnapshotInfo
from prewarm.errors import InvalidRequest, NotFound

from conftest import Origin


def test_snapshot_then_a_new_sandbox_from_it_sees_the_workspace_as_it_was(hot_runtime: str, origin: Origin) -> None:
    with Client(origin.url) as client, Sandbox.create(hot_runtime, user_id="snapper", client=client) as sb:
        sb.files.write("notes/a.txt", "first\n")
        first = sb.snapshot(label="v1")
        assert isinstance(first, SnapshotInfo)
        assert first.snapshot.startswith("sha256:") and first.parent is None
        assert first.runtime == sb.digest and first.label == "v1"
        assert first.files >= 1 and first.bytes_total >= 6
        sb.files.write("notes/a.txt", "second\n")
        second = sb.snapshot()
        assert second.parent == first.snapshot and second.snapshot != first.snapshot
        assert second.label is None
        with Sandbox.from_snapshot(first.snapshot, user_id="snapper", client=client) as old:
            assert old.id != sb.id and old.digest == sb.digest
            assert old.files.read_text("notes/a.txt") == "first\n"
            # The copy is its own: writing it leaves the original alone.
            old.files.write("notes/a.txt", "changed in the copy\n")
        assert sb.files.read_text("notes/a.txt") == "second\n"
        # Another user cannot start from it: as if it did not exist.
        with pytest.raises(NotFound):
            Sandbox.from_snapshot(first.snapshot, user_id="someone-else", client=client)
        with pytest.raises(InvalidRequest):
            Sandbox.from_snapshot("not-a-digest", client=client)


def test_fork_makes_independent_ready_copies(hot_runtime: str, origin: Origin) -> None:
    with Sandbox.create(hot_runtime, user_id="forker", base_url=origin.url) as sb:
        sb.files.write("state.txt", "shared start\n")
        clones = sb.fork(2)
        try:
            assert len(clones) == 2 and len({c.id for c in clones} | {sb.id}) == 3
            for i, c in enumerate(clones):
                assert c.info.status == "ready"
                assert c.files.read_text("state.txt") == "shared start\n"
                c.files.write("state.txt", f"clone {i}\n")
            assert [c.files.read_text("state.txt") for c in clones] == ["clone 0\n", "clone 1\n"]
            assert sb.files.read_text("state.txt") == "shared start\n"
        finally:
            for c in clones:
                c.kill()
        with pytest.raises(InvalidRequest):
            sb.fork(0)
    # Each clone had a client of its own: closing the parent's handle left them working, and
    # killing them did not need it.


def test_pause_then_resume_keeps_the_id_and_the_files(hot_runtime: str, origin: Origin) -> None:
    sb = Sandbox.create(hot_runtime, user_id="pauser", base_url=origin.url)
    sb.files.write("work/progress.txt", "step 7 of 9\n")
    sid = sb.id
    snap = sb.pause()
    assert snap.startswith("sha256:")
    with pytest.raises(NotFound):
        sb.exec("true")  # the handle is done
    with Sandbox.resume(sid, base_url=origin.url) as back:
        assert back.id == sid and back.info.status == "ready"
        assert back.files.read_text("work/progress.txt") == "step 7 of 9\n"
        assert back.exec("cat work/progress.txt").stdout == "step 7 of 9\n"
    with pytest.raises(NotFound):
        Sandbox.resume(sid, base_url=origin.url)  # killed after resuming: nothing to resume


async def test_async_fork_pause_and_resume(hot_runtime: str, origin: Origin) -> None:
    async with await AsyncSandbox.create(hot_runtime, user_id="apauser", base_url=origin.url) as sb:
        await sb.files.write("x.txt", "async\n")
        snap = await sb.snapshot(label="a")
        assert snap.label == "a"
        clones = await sb.fork(2)
        try:
            for c in clones:
                assert await c.files.read_text("x.txt") == "async\n"
        finally:
            for c in clones:
                await c.kill()
        sid = sb.id
        await sb.pause()
    back = await AsyncSandbox.resume(sid, base_url=origin.url)
    async with back:
        assert back.id == sid
        assert (await back.exec("cat x.txt")).stdout == "async\n"

"""``sb.files`` against the real origin: round trips (binary, large, unicode names, file objects),
listings, modes, remove, directories in and out, errors mapped, and the async twin."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from prewarm import AsyncClient, AsyncSandbox, Client, FileEntry, Sandbox
from prewarm.errors import Conflict, InvalidRequest, NotFound

from conftest import Origin


def test_files_round_trip_list_and_remove(hot_runtime: str, origin: Origin) -> None:
    binary = bytes(range(256)) * 300
    large = os.urandom(9 << 20)
    with Client(origin.url) as client, Sandbox.create(hot_runtime, client=client) as sb:
        assert sb.files.write("bin.dat", binary) == len(binary)
        assert sb.files.write("big/large.bin", io.BytesIO(large)) == len(large)  # streamed
        assert sb.files.write("/workspace/données/日本語 ✓ 50%.txt", "héllo\n") == 7
        assert sb.files.read("bin.dat") == binary
        assert sb.files.read("big/large.bin") == large
        assert sb.files.read_text("données/日本語 ✓ 50%.txt") == "héllo\n"
        # The sandbox sees them and owns them.
        r = sb.exec("wc -c < big/large.bin && cat 'données/日本語 ✓ 50%.txt' && echo x >> bin.dat")
        assert r.ok and r.stdout == f"{len(large)}\nhéllo\n", r

        sb.files.write("run.sh", "#!/bin/sh\necho ran\n", mode=0o755)
        assert sb.exec(["./run.sh"]).stdout == "ran\n"
        entries = {e.name: e for e in sb.files.list()}
        assert sorted(entries) == ["big", "bin.dat", "données", "run.sh"]
        assert entries["run.sh"] == FileEntry(
            "run.sh", "file", 19, 0o755, entries["run.sh"].mtime
        )
        assert entries["big"].type == "dir"
        assert entries["bin.dat"].size == len(binary) + 2
        [large_entry] = sb.files.list("big")
        assert (large_entry.name, large_entry.size, large_entry.mode) == ("large.bin", len(large), 0o644)

        sb.files.remove("big")
        with pytest.raises(NotFound):
            sb.files.read("big/large.bin")
        with pytest.raises(NotFound):
            sb.files.remove("big")
        # Errors carry the server's code.
        with pytest.raises(Conflict) as conflict:
            sb.files.read("données")
        assert conflict.value.code == "is_a_directory"
        with pytest.raises(InvalidRequest) as bad:
            sb.files.read("/etc/passwd")
        assert bad.value.code == "bad_path"
        with pytest.raises(InvalidRequest) as bad:
            sb.files.write("x", b"x", mode=0o4755)
        assert bad.value.code == "bad_mode"
        r = sb.exec("ln -s /etc out")
        assert r.ok, r
        with pytest.raises(InvalidRequest) as esc:
            sb.files.read("out/passwd")
        assert esc.value.code == "path_escapes_workspace"


def test_file_size_limit_is_an_error_with_its_code(hot_runtime: str, origin: Origin) -> None:
    with Sandbox.create(hot_runtime, base_url=origin.url, limits={"file_bytes": 1 << 16}) as sb:
        with pytest.raises(InvalidRequest) as big:
            sb.files.write("f", b"x" * ((1 << 16) + 1))
        assert big.value.code == "too_large" and big.value.status == 413
        with pytest.raises(NotFound):
            sb.files.read("f")


def test_directories_in_and_out(hot_runtime: str, origin: Origin, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    (src / "pkg" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 1000)
    (src / "main.py").write_text("import pkg; print(pkg.VALUE)\n")
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o755)
    with Sandbox.create(hot_runtime, base_url=origin.url) as sb:
        assert sb.files.upload_dir(src, "proj") == 6
        r = sb.exec("cd proj && python3 main.py && ./run.sh")
        assert r.stdout == "42\nhi\n", r
        sb.exec("cd proj && mkdir out && echo made > out/result.txt && ln -s result.txt out/link && ln -s /etc out/escape")
        dest = tmp_path / "back"
        sb.files.download_dir("proj", dest)
        assert (dest / "pkg" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 1000
        assert (dest / "out" / "result.txt").read_text() == "made\n"
        assert os.readlink(dest / "out" / "link") == "result.txt"
        assert not (dest / "out" / "escape").exists() and not (dest / "out" / "escape").is_symlink()
        assert os.access(dest / "run.sh", os.X_OK)
        with pytest.raises(NotFound):
            sb.files.download_dir("nope", tmp_path / "none")


async def test_async_files(hot_runtime: str, origin: Origin, tmp_path: Path) -> None:
    payload = os.urandom(3 << 20)
    async with AsyncClient(origin.url) as client:
        async with await AsyncSandbox.create(hot_runtime, client=client) as sb:
            assert await sb.files.write("a/b.bin", payload) == len(payload)
            assert await sb.files.write("c.bin", io.BytesIO(payload)) == len(payload)
            assert await sb.files.read("a/b.bin") == payload
            assert await sb.files.read("c.bin") == payload
            assert [e.name for e in await sb.files.list()] == ["a", "c.bin"]
            await sb.files.remove("a")
            with pytest.raises(NotFound):
                await sb.files.read("a/b.bin")
            (tmp_path / "up").mkdir()
            (tmp_path / "up" / "x.txt").write_text("x\n")
            assert await sb.files.upload_dir(tmp_path / "up") == 1
            await sb.files.download_dir("", tmp_path / "down")
            assert (tmp_path / "down" / "x.txt").read_text() == "x\n"
            assert (tmp_path / "down" / "c.bin").read_bytes() == payload

"""unpack_outputs: a Cloud Build run's outputs archive is what the run wrote (hostile). Only
regular files and folders come out, inside the box, within the quota; the rest is named."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from infra.gcp.cloudbuild import unpack_outputs
from workers.collect import Refused


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def entry(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def unpack(raw: bytes, box: Path, **kw: int) -> list[str]:
    return unpack_outputs(raw, box, max_bytes=kw.get("max_bytes", 1 << 20),
                          max_files=kw.get("max_files", 100))  # fmt: skip


def test_files_and_folders_come_out(tmp_path: Path) -> None:
    box = tmp_path / "box"
    dirinfo = tarfile.TarInfo("./fmel")
    dirinfo.type = tarfile.DIRTYPE
    raw = archive((dirinfo, None), file("./result.json", b"{}"),
                  file("./fmel/part-00000.parquet", b"PAR1"))  # fmt: skip
    assert unpack(raw, box) == []
    assert (box / "result.json").read_bytes() == b"{}"
    assert (box / "fmel" / "part-00000.parquet").read_bytes() == b"PAR1"


def test_links_fifos_and_devices_are_left_out_and_named(tmp_path: Path) -> None:
    box = tmp_path / "box"
    raw = archive(
        entry("./result.json", tarfile.SYMTYPE, "/etc/passwd"),
        entry("./hard", tarfile.LNKTYPE, "result.json"),
        entry("./pipe", tarfile.FIFOTYPE),
        entry("./dev", tarfile.CHRTYPE),
        file("./chart.png", b"\x89PNG"),
    )
    assert unpack(raw, box) == ["result.json", "hard", "pipe", "dev"]
    assert sorted(os.listdir(box)) == ["chart.png"]


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d/x", "./fmel/../../x"])
def test_a_path_outside_the_box_refuses_the_archive(tmp_path: Path, name: str) -> None:
    with pytest.raises(Refused, match="outside"):
        unpack(archive(file(name)), tmp_path / "box")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()


def test_a_file_through_a_link_is_never_written(tmp_path: Path) -> None:
    """A symlink entry is dropped, so a file after it cannot be written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    raw = archive(entry("./d", tarfile.SYMTYPE, str(outside)), file("./d/x", b"pwned"))
    box = tmp_path / "box"
    assert unpack(raw, box) == ["d"]
    assert list(outside.iterdir()) == []
    assert not (box / "d").is_symlink() and (box / "d" / "x").read_bytes() == b"pwned"


def test_the_quota_holds_unpacked(tmp_path: Path) -> None:
    big = archive(file("./a", b"0" * 600), file("./b", b"0" * 600))  # compresses to little
    with pytest.raises(Refused, match="more than 1000 bytes"):
        unpack(big, tmp_path / "box", max_bytes=1000)
    many = archive(*(file(f"./f{i}") for i in range(5)))
    with pytest.raises(Refused, match="more than 3 entries"):
        unpack(many, tmp_path / "box2", max_files=3)


def test_a_name_twice_or_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Refused, match="twice"):
        unpack(archive(file("./a"), file("./a")), tmp_path / "box")
    with pytest.raises(Refused, match="not a readable archive"):
        unpack(b"not gzip at all", tmp_path / "box2")

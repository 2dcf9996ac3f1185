"""janus_rt.files: atomic file writes, staged folders and the `--out` folder rules.

What is checked is what a reader or a later run would see: the old content or the new one, never half of one,
and no temp file or folder left behind, whether the write succeeds, raises, or is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from janus_rt.errors import InputError
from janus_rt.files import (atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, check_out_folder,
                            staged_folder)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Boom(Exception):
    pass


def fail(tmp: Path) -> None:
    raise Boom


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "a much longer first version\n")
    atomic_write_text(path, "short\n")
    assert path.read_text() == "short\n"  # nothing of the longer old content remains
    atomic_write_bytes(path, memoryview(b"\x00\x01bytes"))
    assert path.read_bytes() == b"\x00\x01bytes"
    assert names(tmp_path) == ["f.txt"]


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert names(tmp_path) == ["report.json"]


def test_a_failing_first_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom):
        atomic_write(tmp_path / "new.png", fail)
    assert names(tmp_path) == []


def test_json_that_cannot_be_written_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    atomic_write_json(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]} and path.read_text().endswith("}\n")
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert names(tmp_path) == ["r.json"]


def test_atomic_write_creates_parents_and_ordinary_permissions(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "f.json"
    atomic_write_json(path, [])
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0o600


def test_staged_folder_moves_into_place_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_folder(target) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.")
        (staging / "a.txt").write_text("a")
        assert not target.exists()  # nothing visible until the block ends
    assert names(target) == ["a.txt"]
    assert names(tmp_path) == ["out"]


def test_staged_folder_is_removed_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(Boom), staged_folder(target) as staging:
        (staging / "a.txt").write_text("a")
        raise Boom
    assert names(tmp_path) == []


def test_staged_folder_keeps_the_old_folder_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(Boom), staged_folder(target, replace=True) as staging:
        (staging / "new.txt").write_text("new")
        raise Boom
    assert names(target) == ["old.txt"]
    assert names(tmp_path) == ["out"]


def test_staged_folder_replaces_only_when_allowed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="not empty"), staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert names(target) == ["old.txt"] and names(tmp_path) == ["out"]
    with staged_folder(target, replace=True) as staging:
        (staging / "new.txt").write_text("new")
    assert names(target) == ["new.txt"]  # the replace is complete: nothing of the old folder remains
    assert names(tmp_path) == ["out"]


def test_staged_folder_fills_an_empty_folder_with_ordinary_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    with staged_folder(target) as staging:
        (staging / "x").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert names(target) == ["x"] and target.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0o700


def test_out_folder_that_receives_files(tmp_path: Path) -> None:
    assert check_out_folder(tmp_path / "new" / "deeper") == "missing"
    assert check_out_folder(tmp_path) == "empty"
    (tmp_path / "earlier.png").write_bytes(b"png")
    assert check_out_folder(tmp_path) == "folder"  # files are added beside what is there


def test_out_folder_written_whole(tmp_path: Path) -> None:
    out = tmp_path / "export"
    rules = dict(replaces="a janus-rt export", same_kind=lambda p: (p / "manifest.json").is_file())
    assert check_out_folder(out, **rules) == "missing"
    out.mkdir()
    assert check_out_folder(out, **rules) == "empty"
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty and not a janus-rt export") as e:
        check_out_folder(out, **rules)
    assert e.value.param == "--out"
    (out / "manifest.json").write_text("{}")
    assert check_out_folder(out, **rules) == "same kind"
    with pytest.raises(InputError, match="not empty and not a tiny checkpoint"):
        check_out_folder(out, replaces="a tiny checkpoint")  # no same_kind: nothing may be replaced


def test_out_folder_that_is_a_file_or_under_a_file(tmp_path: Path) -> None:
    file = tmp_path / "images.png"
    file.write_bytes(b"not a folder")
    with pytest.raises(InputError, match=r"--out .*images\.png exists and is a file, not a folder"):
        check_out_folder(file)
    with pytest.raises(InputError, match=r"images\.png is a file, not a folder"):
        check_out_folder(file / "sub" / "deeper", flag="--json-out")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions: POSIX, not root")
def test_out_folder_where_nothing_can_be_written(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="no permission to write in"):
            check_out_folder(locked / "out")
    finally:
        locked.chmod(0o700)

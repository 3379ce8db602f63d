"""paretoflow.io: atomic writes keep the old file on failure, folders swap whole, paths stay inside."""

import os
import stat

import pandas as pd
import pytest

from paretoflow import io


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    io.write_json(path, {"v": 1})

    def broken(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, broken)
    assert io.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]          # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask          # not mkstemp's 0600


def test_atomic_dir_swaps_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "out"
    with io.atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as tmp:
            (tmp / "x.txt").write_text("2")
            (tmp / "y.txt").write_text("2")
            raise RuntimeError("killed half-way")
    assert sorted(p.name for p in target.iterdir()) == ["x.txt"] and (target / "x.txt").read_text() == "1"
    with io.atomic_dir(target) as tmp:
        (tmp / "y.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["y.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tables_are_deterministic_and_columns_checked(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    io.write_table(frame, tmp_path / "t1.parquet")
    io.write_table(frame.copy(), tmp_path / "t2.parquet")
    assert io.file_hash(tmp_path / "t1.parquet") == io.file_hash(tmp_path / "t2.parquet")
    with pytest.raises(ValueError, match=r"t1.parquet: missing columns \['c'\]"):
        io.read_table(tmp_path / "t1.parquet", ["a", "c"])
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        io.read_table(tmp_path / "nope.parquet")


def test_inside_refuses_paths_that_leave_the_root(tmp_path):
    assert io.inside(tmp_path, "a/b") == (tmp_path / "a/b").resolve()
    for bad in ("", ".", "..", "../x", "/etc"):
        with pytest.raises(ValueError):
            io.inside(tmp_path, bad)
    (tmp_path / "link").symlink_to("/tmp")
    with pytest.raises(ValueError, match="outside the project root"):
        io.inside(tmp_path, "link/x")

import os
from pathlib import Path

import pytest

from arenapref.io import atomic_dir, atomic_path

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left behind


def test_atomic_dir_swaps_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "adapter"
    with atomic_dir(target) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "weights").write_text("v2-partial")
            raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    with atomic_dir(target) as staging:
        (staging / "other").write_text("v3")
    assert [p.name for p in target.iterdir()] == ["other"]
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


@pytest.mark.parametrize("writer", ["atomic_path", "atomic_dir"])
def test_a_process_killed_mid_write_leaves_the_old_output(tmp_path, writer):
    """SIGKILL half-way through writing an output: the output path still holds the previous
    version (a killed inference or submission step writes through these helpers)."""
    import signal
    import subprocess
    import sys

    target = tmp_path / ("submission.csv" if writer == "atomic_path" else "adapter")
    if writer == "atomic_path":
        target.write_text("id,old\n")
        body = "with atomic_path(target) as tmp:\n    tmp.write_text('id,half')\n    os.kill(os.getpid(), 9)\n"
    else:
        target.mkdir()
        (target / "weights").write_text("old")
        body = (
            "with atomic_dir(target) as staging:\n    (staging / 'weights').write_text('half')\n"
            "    os.kill(os.getpid(), 9)\n"
        )
    code = (
        f"import os, sys\nsys.path.insert(0, {str(ROOT / 'src')!r})\nfrom pathlib import Path\n"
        f"from arenapref.io import atomic_dir, atomic_path\ntarget = Path({str(target)!r})\n" + body
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    if writer == "atomic_path":
        assert target.read_text() == "id,old\n"
    else:
        assert (target / "weights").read_text() == "old"


def test_write_text_if_changed_keeps_an_unchanged_file_as_it_was(tmp_path):
    from arenapref.io import write_text_if_changed

    path = tmp_path / "train.csv"
    assert write_text_if_changed(path, "id\n1\n") is True
    os.utime(path, (1_000_000, 1_000_000))
    assert write_text_if_changed(path, "id\n1\n") is False
    assert path.stat().st_mtime == 1_000_000  # a workflow over it sees nothing new
    assert write_text_if_changed(path, "id\n2\n") is True
    assert path.read_text() == "id\n2\n" and path.stat().st_mtime > 1_000_000

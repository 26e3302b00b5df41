"""A full disk or a refused write: one line naming the output, exit code 2, no partial output left."""

import builtins
import errno
from pathlib import Path

import pytest

from conftest import REPO
from rlhfpipe.cli import run_stage
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import atomic_path


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` characters are written."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk_under(monkeypatch, folder: Path, room: int) -> None:
    """Writes of files under ``folder`` (opened with open() or Path.open()) hit a full disk."""
    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax")
        return FullDisk(f, room) if writing and str(Path(file).resolve()).startswith(str(folder.resolve())) else f

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(Path, "open", lambda self, mode="r", *a, **k: fake_open(self, mode, *a, **k))


def test_a_stage_on_a_full_disk_stops_in_one_line_and_leaves_no_output(tmp_path, monkeypatch, capsys):
    import runpy

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    fill_disk_under(monkeypatch, tmp_path / "data", room=10_000)
    main = runpy.run_path(str(REPO / "stages/corpus.py"))["main"]
    with pytest.raises(SystemExit) as exit:
        run_stage(main, ["data/corpus/corpus.jsonl"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: data/corpus/corpus.jsonl: cannot write (No space left on device)\n"
    assert list((tmp_path / "data/corpus").iterdir()) == []  # neither the output nor its temporary sibling


def test_dvclive_curves_on_a_full_disk_leave_no_curve_folder(tmp_path, monkeypatch):
    from dvclive import Live

    curves = tmp_path / "metrics/train/ppo"
    fill_disk_under(monkeypatch, tmp_path / "metrics", room=50)
    with pytest.raises(PipelineError) as err:
        with atomic_path(curves) as tmp:
            live = Live(dir=str(tmp), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)
            for step in range(20):
                live.log_metric("objective/score", float(step))
                live.next_step()
            live.end()
    assert str(err.value) == f"{curves}: cannot write (No space left on device)"
    assert list((tmp_path / "metrics/train").iterdir()) == []


def test_a_refused_folder_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)

    def main(argv):
        with atomic_path(tmp_path / "out" / "x.json") as tmp:
            tmp.write_text("{}")

    with pytest.raises(SystemExit) as exit:
        run_stage(main, [])
    assert exit.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'out'}: Permission denied\n"

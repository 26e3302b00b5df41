"""Atomic writes: an interrupted stage leaves the previous output or none, never a partial one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from rlhfpipe.errors import PipelineError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it onto ``target`` only if the block succeeds.

    Works for files and directories. The sibling lives in the same directory, so the final
    ``os.replace`` is a rename on one filesystem (atomic for files; for directories the old one is
    moved aside first, then removed).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    try:
        yield tmp
    except BaseException as err:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(err, OSError) and _while_writing(err, tmp):
            raise PipelineError(f"{target}: cannot write ({err.strerror or err})") from None
        raise
    if not tmp.exists():
        raise FileNotFoundError(f"{tmp}: the block wrote nothing")
    if tmp.is_dir() and target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, target)


def _while_writing(err: OSError, tmp: Path) -> bool:
    """A full disk or a refused write, or any OSError on the temporary output itself."""
    full_or_refused = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
    return full_or_refused or (err.filename is not None and str(err.filename).startswith(str(tmp)))


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read our own JSONL outputs (inputs from users go through rlhfpipe.data.formats instead)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: file not found (run the upstream stage first: dvc repro)")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise PipelineError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows

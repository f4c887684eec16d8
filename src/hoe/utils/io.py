"""Atomic outputs: a result folder appears whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from hoe.errors import HoEError


def check_output_dir(out: str | Path, overwrite: bool, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Refuse an existing output unless ``overwrite``, and an output that is, holds or sits inside
    one of the local ``inputs`` (replacing it would destroy what the job reads); checked before
    any work starts."""
    out = Path(out)
    for source in inputs:
        source_path = Path(str(source)).expanduser()
        if not source_path.exists():
            continue  # a hub name or an alias, not a local folder
        a, b = out.resolve(), source_path.resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise HoEError(f"output '{out}' overlaps the input '{source}'; choose a folder of its own")
    if out.exists() and not overwrite:
        raise HoEError(f"output '{out}' already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise HoEError(f"output '{out}' exists and is not a folder")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to ``out``.

    On any exception the temporary folder is removed and ``out`` is left as it was.
    """
    out = check_output_dir(out, overwrite)
    if not out.name or out.name in (".", ".."):
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); an output gets the usual permissions
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; an ``out`` that another run finished meanwhile is replaced only
    with ``overwrite``, else one line (never a half-moved folder or a leaked temporary one)."""
    if out.exists():
        if not overwrite:
            raise HoEError(f"output '{out}' appeared while this run was writing it (another run?); pass --overwrite")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "previous")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(tmp, out)
    except OSError:  # another writer renamed its folder onto ``out`` between the check and the rename
        if not out.exists():
            raise
        _move_into_place(tmp, out, overwrite)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Write a file through a temporary sibling and a rename: it appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (see write_text)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_prompt_rows(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file in which every line has a string 'prompt'."""
    return read_jsonl(path, required=("prompt",), what="prompts")


def read_jsonl(path: str | Path, required: tuple[str, ...], what: str = "rows") -> list[dict]:
    """The rows of a JSON-lines file in which every line has the ``required`` string fields; one
    line naming the file and line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise HoEError(f"input file not found: '{path}'")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HoEError(f"{path} line {number}: malformed JSON ({exc.msg})") from None
        missing = [name for name in required if not isinstance(row, dict) or not isinstance(row.get(name), str)]
        if missing:
            raise HoEError(f"{path} line {number}: each line needs a string '{missing[0]}'")
        rows.append(row)
    if not rows:
        raise HoEError(f"{path} holds no {what}")
    return rows

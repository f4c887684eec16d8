"""Atomic outputs: a result folder appears whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from hoe.errors import HoEError


def check_apart(out: str | Path, inputs: tuple[str | Path, ...]) -> None:
    """Refuse an output that is, holds or sits inside one of the local ``inputs``."""
    for source in inputs:
        source_path = Path(str(source)).expanduser()
        if not source_path.exists():
            continue  # a hub name or an alias, not a local folder
        a, b = Path(out).resolve(), source_path.resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise HoEError(f"output '{out}' overlaps the input '{source}'; choose a folder of its own")


def _check_parents(out: Path) -> None:
    """An output under a file (``--out notes.txt/run``) could never be written: say so before any work."""
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise HoEError(f"output '{out}' cannot be written: '{parent}' is a file, not a folder")
            return


def check_output_dir(
    out: str | Path, overwrite: bool, inputs: tuple[str | Path, ...] = (), marker: str | None = None
) -> Path:
    """Refuse an existing output unless ``overwrite``, and an output that is, holds or sits inside
    one of the local ``inputs`` (replacing it would destroy what the job reads); checked before
    any work starts. With ``marker`` (the file every output of the job holds, e.g.
    ``adapter_config.json``), ``--overwrite`` replaces only an empty folder or one holding it: a
    mistyped ``--out ~/Documents --overwrite`` is refused, not emptied."""
    out = Path(out)
    check_apart(out, inputs)
    _check_parents(out)
    if out.exists() and not overwrite:
        raise HoEError(f"output '{out}' already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise HoEError(f"output '{out}' exists and is not a folder")
    if marker is not None and out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise HoEError(
            f"output '{out}' is a folder this command did not write (no {marker}); --overwrite replaces only "
            "its own kind of output, so choose another folder"
        )
    return out


def check_output_file(out: str | Path, overwrite: bool, inputs: tuple[str | Path, ...] = ()) -> Path:
    """The file counterpart of ``check_output_dir``: refuse an existing file unless ``overwrite``,
    a folder, and a file that is one of the ``inputs`` (it would be replaced while being read)."""
    out = Path(out)
    _check_parents(out)
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise HoEError(f"output '{out}' is the input '{source}'; write to a file of its own")
    if out.is_dir():
        raise HoEError(f"output '{out}' is a folder; name a file")
    if out.exists() and not overwrite:
        raise HoEError(f"output '{out}' already exists (pass --overwrite to replace it)")
    return out


def _with_parent(out: Path) -> Path:
    """``out`` with a real name ('.' resolved) and its parent folder made: temp siblings go there."""
    if not out.name or out.name in (".", ".."):
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to ``out``.

    On any exception the temporary folder is removed and ``out`` is left as it was.
    """
    out = _with_parent(check_output_dir(out, overwrite))
    remove_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{run_tag()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); an output gets the usual permissions
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def one_writer(out: str | Path, what: str, lock: str | Path | None = None, keep: bool = False) -> Iterator[None]:
    """Hold ``out``'s lock (``.OUT.lock`` beside it unless ``lock`` names another) while the block
    writes it: a second writer gets one line naming ``what`` is running, at once, instead of waiting
    or interleaving with the first. The lock file is removed when the block ends (nobody waits on it,
    so that is safe; a failed run leaves nothing behind) unless ``keep`` (a lock inside the output)."""
    out = Path(out)
    lock = Path(lock) if lock is not None else out.with_name(f".{out.name}.lock")
    held = FileLock(str(lock), timeout=0)
    try:
        held.acquire()
    except Timeout:
        raise HoEError(f"another {what} is writing '{out}' (lock {lock}); wait for it to finish") from None
    try:
        yield
    finally:
        held.release()
        if not keep:
            lock.unlink(missing_ok=True)


@contextlib.contextmanager
def resumable_dir(out: str | Path, what: str) -> Iterator[Path]:
    """Like ``atomic_dir`` (with replacement), for a long job whose finished parts a killed run
    should not lose: the staging folder has a stable name, ``.OUT.partial``, and survives an
    interruption or a crash so that the next run of the same job finds it and keeps what is still
    valid (the caller decides what). A lock beside it lets one run at a time write ``out``; a second
    gets one line naming ``what`` is running. Bad input (``HoEError``) removes the staging folder:
    it holds nothing worth resuming."""
    out = _with_parent(Path(out))
    staging = out.with_name(f".{out.name}.partial")
    with one_writer(out, what):
        remove_leftovers(out)
        staging.mkdir(exist_ok=True)
        os.chmod(staging, 0o777 & ~_umask())
        try:
            yield staging
        except HoEError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _move_into_place(staging, out, overwrite=True)


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; an ``out`` that another run finished meanwhile is replaced only
    with ``overwrite``, else one line (never a half-moved folder or a leaked temporary one)."""
    if out.exists():
        if not overwrite:
            raise HoEError(f"output '{out}' appeared while this run was writing it (another run?); pass --overwrite")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{run_tag()}-", dir=out.parent))
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


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the temporary siblings of ``out`` that a killed run left (``.OUT.tmp-HOST-PID-*``,
    ``.OUT.old-HOST-PID-*`` and ``.OUT.tmp-HOST-PID`` files): each names the machine and process that
    made it, and only those of this machine's processes that no longer run are removed, so a run
    writing the same output at this moment (here, or on another node of a shared file system) keeps
    its own. A GB-sized partial bundle of a killed ``hoe build`` would otherwise stay until someone
    found it by hand."""
    removed = []
    for path in out.parent.glob(f".{glob_escape(out.name)}.*-*"):
        match = _LEFTOVER.fullmatch(path.name[len(out.name) + 1 :])
        if match is None or match.group(1) != _HOST or _process_runs(int(match.group(2))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


_LEFTOVER = re.compile(r"\.(?:tmp|old)-([A-Za-z0-9]+)-(\d+)(?:-[A-Za-z0-9_]+)?")
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def run_tag() -> str:
    """``HOST-PID``: what a temporary name carries so that a later run can tell a dead run's leftover."""
    return f"{_HOST}-{os.getpid()}"


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Write a file through a temporary sibling and a rename: it appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = path.with_name(f".{path.name}.tmp-{run_tag()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: str | Path, kind: type | None = dict) -> Any:
    """A JSON file that may come from anyone (a bundle, an adapter, a run folder): malformed text or
    a value of the wrong kind is one line naming the file, never a traceback."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HoEError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if kind is not None and not isinstance(value, kind):
        raise HoEError(f"{path}: expected a JSON {'object' if kind is dict else kind.__name__}")
    return value


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
    if path.is_dir():
        raise HoEError(f"input '{path}' is a folder; name a JSONL file")
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

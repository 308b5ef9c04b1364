"""What goes wrong with the folder attn writes to (ATTN_HOME, default ~/.attn), said in one line.

A full disk, a folder that cannot be read or written, or an ATTN_HOME that names a file all raise
`AttnHomeError`, whose message says what happened and what to do; the CLI prints it and exits 2,
the app shows it and keeps serving. Files are written whole or not at all (`write_text_atomic`),
so a write that fails never costs what was saved before.

Only the standard library: the job runner imports this (through `attn.jobs.worker`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from attn.device import attn_home

# errno values that mean "no room": the disk, a quota, or a file-size limit (RLIMIT_FSIZE)
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# SQLite's codes for the same: SQLITE_FULL (13) when the OS says ENOSPC; any other failed write
# (EFBIG, EDQUOT) reads as an I/O error on a write, a truncate or the growth of the -shm file
SQLITE_NO_ROOM = frozenset({"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE",
                            "SQLITE_IOERR_TRUNCATE"})


class AttnHomeError(RuntimeError):
    """ATTN_HOME (or a file attn was asked to write) cannot be used; the message says what to do."""


def _in_home(path: str | os.PathLike[str]) -> bool:
    folder = Path(path).expanduser().absolute().parent
    home = attn_home().expanduser().absolute()
    return folder == home or home in folder.parents


def where(path: str | os.PathLike[str]) -> str:
    """"ATTN_HOME (/x/.attn)" for a path under ATTN_HOME, else the path's folder."""
    if _in_home(path):
        return f"ATTN_HOME ({attn_home().expanduser().absolute()})"
    return str(Path(path).expanduser().absolute().parent)


def disk_full(path: str | os.PathLike[str], detail: str) -> AttnHomeError:
    elsewhere = "set ATTN_HOME to another folder" if _in_home(path) else "write it elsewhere"
    return AttnHomeError(
        f"the disk under {where(path)} is full (or a quota or file-size limit was reached), so "
        f"{Path(path).name} was not written: free some space or {elsewhere}; nothing saved "
        f"before was lost or overwritten ({detail})")


def explain_os_error(error: OSError, path: str | os.PathLike[str]) -> AttnHomeError:
    """One line for an OSError met while reading or writing `path`."""
    detail = error.strerror or str(error)
    if error.errno in NO_ROOM_ERRNOS:
        return disk_full(path, detail)
    if isinstance(error, PermissionError):
        return AttnHomeError(f"cannot use {path}: permission denied; give this user access to "
                             f"{where(path)} or set ATTN_HOME to another folder")
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        return not_a_folder(path)
    return AttnHomeError(f"cannot use {path}: {detail}")


def sqlite_no_room(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorname", None) in SQLITE_NO_ROOM


def not_a_folder(path: str | os.PathLike[str]) -> AttnHomeError:
    # the first part of the path that exists and is not a folder is the one to fix
    blocker = Path(path).expanduser().absolute()
    while not blocker.exists() and blocker != blocker.parent:
        blocker = blocker.parent
    for part in (blocker, *blocker.parents):
        if part.exists() and not part.is_dir():
            blocker = part
    home = attn_home()
    named = "ATTN_HOME" if blocker == home.absolute() else "a part of the path"
    return AttnHomeError(f"cannot use {path}: {named} ({blocker}) is a file, not a folder; set "
                         "ATTN_HOME to a folder (attn creates it)")


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create `folder` (and its parents) if needed; AttnHomeError when it cannot be a folder."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise explain_os_error(error, folder / "") from error
    if not folder.is_dir():
        raise not_a_folder(folder)
    return folder


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` whole or not at all: a new file beside it, then a rename. On any
    failure the partial file is removed and the old `path` is as it was."""
    path = Path(path)
    ensure_folder(path.parent)
    tmp = None
    try:
        # the new file keeps the old one's permissions (mkstemp's are owner-only)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # the rename must not land before the bytes do
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise explain_os_error(error, path) from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

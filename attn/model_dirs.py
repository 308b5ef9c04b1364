"""Which folders a model directory may come from: ATTN_MODEL_DIRS.

`ATTN_MODEL_DIRS` lists folders, separated by os.pathsep (":" on Linux). A named model directory
must lie inside one of them. The check is made in two steps:

1. lexically, without touching the disk: `~` expanded from $HOME, the path made absolute against
   the working directory and normalised (`..` folded away, as os.path.normpath does), then
   compared, folder by folder, with the allowed folders normalised the same way. A path outside
   them is refused here, before anything is stat'ed, listed or opened, so a link cannot make the
   server say what is or is not on its disk.
2. only then symlinks are resolved (os.path.realpath) and the result checked again, against the
   allowed folders resolved the same way: a link inside an allowed folder that leads out of it is
   refused too, without saying where it leads.

Unset or empty, any local directory may be named (the app on localhost, the command line); the
Models and Planner pages say so, and refuse local directories when the server listens beyond
the loopback (ui.model_dirs). The packaged MiniLM and the presets are names, not paths: they are
always allowed.

Standard library only: the pages and the command line check a path before importing torch.
"""
from __future__ import annotations

import os

ENV = "ATTN_MODEL_DIRS"


class ModelDirNotAllowed(ValueError):
    """A model directory outside ATTN_MODEL_DIRS; the message says so in one line."""


def allowed_roots(environ: dict[str, str] | None = None) -> tuple[str, ...] | None:
    """The allowed folders, normalised lexically; None when ATTN_MODEL_DIRS is unset or empty
    (any directory)."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    roots = tuple(dict.fromkeys(_lexical(part) for part in raw.split(os.pathsep) if part.strip()))
    return roots or None


def _lexical(path: str) -> str:
    # expanduser reads $HOME for "~" (the user database only for "~name"), never the path itself
    return os.path.normpath(os.path.abspath(os.path.expanduser(path.strip())))


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def lexical_path(source: str) -> str:
    """`source` as the absolute, normalised path the checks compare; touches no disk."""
    if "\x00" in source:
        raise ModelDirNotAllowed("a model directory's name cannot hold a NUL character")
    return _lexical(source)


def refusal(source: str, environ: dict[str, str] | None = None) -> str | None:
    """The one line that refuses `source` as a model directory, from its name alone (step 1), or
    None when its name is inside the allowed folders (or any folder is allowed). Touches no disk."""
    roots = allowed_roots(environ)
    if roots is None:
        return None
    path = lexical_path(source)
    if any(_inside(path, root) for root in roots):
        return None
    return (f"model directory {source} is outside the folders this attn may read models from "
            f"({ENV}); name one inside them, or minilm or a preset")


def checked_model_dir(source: str, environ: dict[str, str] | None = None) -> str:
    """The directory to load: `source` checked lexically first, then with its symlinks resolved.
    Raises ModelDirNotAllowed with one line. With no ATTN_MODEL_DIRS, the resolved path of any
    directory."""
    line = refusal(source, environ)
    if line is not None:
        raise ModelDirNotAllowed(line)
    real = os.path.realpath(lexical_path(source))
    roots = allowed_roots(environ)
    if roots is not None and not any(_inside(real, os.path.realpath(root)) for root in roots):
        raise ModelDirNotAllowed(f"model directory {source} leads outside the folders this attn may "
                                 f"read models from ({ENV}) through a symbolic link")
    return real


def describe(environ: dict[str, str] | None = None) -> str:
    """In words, for a page's caption: which folders model directories may come from."""
    roots = allowed_roots(environ)
    if roots is None:
        return (f"any local directory can be named ({ENV} is not set); set it to the folders models may "
                "come from before serving attn to others")
    return f"model directories come from {', '.join(roots)} ({ENV})"

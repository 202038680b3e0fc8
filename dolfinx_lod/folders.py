"""Ownership of result folders: the manifest of the files the tool wrote, the check that a
folder holds nothing else before it is replaced, and the checks of an output path against the
run's inputs and the working folder. Rank-local (rank 0 of :class:`~dolfinx_lod.io.OutputSet`).

A result folder holds ``manifest.json``: the files and folders the tool wrote there (relative
paths, folders with a trailing ``/``) and the name patterns of the files written into it while
a run goes on (training checkpoints). Anything else in the folder is foreign: the folder is
then never replaced or deleted.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

#: The manifest's file name in a result folder.
MANIFEST = "manifest.json"
_TOOL = "dolfinx_lod"


def entries(folder: Path) -> list[str]:
    """Relative paths of everything below ``folder`` (folders with a trailing ``/``, symbolic
    links not followed), sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        found += [f"{(rel / d).as_posix()}/" for d in dirs]
        found += [(rel / f).as_posix() for f in files]
    return sorted(found)


def manifest(folder: Path, patterns: Sequence[str]) -> dict:
    """The manifest of the files now in ``folder`` and of the run-time ``patterns``."""
    files = [e for e in entries(folder) if e != MANIFEST]
    return {"written_by": _TOOL, "files": files, "patterns": sorted(set(patterns))}


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder`` (None if it has none or a damaged one)."""
    path = folder / MANIFEST
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(data, dict)
        and data.get("written_by") == _TOOL
        and all(isinstance(data.get(k), list) for k in ("files", "patterns"))
    )
    return data if ok else None


def _owned(entry: str, files: set[str], patterns: Sequence[str]) -> bool:
    """Whether ``entry`` is in the manifest: listed, a folder of listed files, or a file
    matching a run-time pattern (or a partial write of one, ``.NAME.*.tmp``)."""
    if entry in files or entry == MANIFEST:
        return True
    if entry.endswith("/") and any(f.startswith(entry) for f in files):
        return True
    if "/" in entry:
        return False
    return any(
        fnmatch.fnmatchcase(entry, p) or fnmatch.fnmatchcase(entry, f".{p}.*.tmp") for p in patterns
    )


def foreign_entry(folder: Path) -> str | None:
    """The first entry of ``folder`` the tool did not write (None: all are in its manifest,
    or the folder is empty or absent). Stops at the first one: a large foreign folder is not
    walked."""
    if not folder.is_dir():
        return None
    data = read_manifest(folder)
    files, patterns = (set(data["files"]), data["patterns"]) if data else (set(), [])
    return _first_foreign(folder, "", files, patterns, data is not None)


def _first_foreign(
    root: Path, prefix: str, files: set[str], patterns: Sequence[str], owned: bool
) -> str | None:
    """Depth-first in name order below ``root / prefix``; ``owned``: a manifest exists."""
    for name in sorted(os.listdir(root / prefix)):
        path = root / prefix / name
        is_dir = path.is_dir() and not path.is_symlink()
        entry = f"{prefix}{name}/" if is_dir else f"{prefix}{name}"
        if not (owned and _owned(entry, files, patterns)):
            return entry
        if is_dir and (found := _first_foreign(root, entry, files, patterns, owned)):
            return found
    return None


def run_patterns(folder: Path) -> list[str]:
    """The run-time patterns of the manifest of ``folder`` (none without one)."""
    data = read_manifest(folder)
    return list(data["patterns"]) if data else []


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def path_conflict(out: Path, inputs: Iterable[str | Path], option: str) -> str | None:
    """Why ``out`` (resolved) must not be written as a whole, or None: it is the working folder
    or a folder above it, or it holds an input of the run (a file it reads)."""
    cwd = Path(os.path.realpath(os.getcwd()))
    if _inside(cwd, out):
        where = "the working folder" if cwd == out else "a folder above the working folder"
        return f"it is {where}; choose a new folder for the results"
    for name in inputs:
        for path in {Path(os.path.abspath(name)), Path(os.path.realpath(name))}:
            if _inside(path, out):
                return (
                    f"it holds {name}, an input of this run (replacing the folder would "
                    f"delete it); choose another {option}"
                )
    return None


def name_problem(out: Path) -> str | None:
    """Why the file system cannot hold ``out`` (name or path too long), or None."""
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    name, path = len(os.fsencode(out.name)), len(os.fsencode(str(out)))
    if name > name_max:
        return f"the name is too long ({name} bytes; the file system allows {name_max})"
    if path >= path_max:
        return f"the path is too long ({path} bytes; the system allows {path_max - 1})"
    return None

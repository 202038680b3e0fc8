"""Output: result folders written as a set, atomic file writes, summary.json, fine-vertex
arrays gathered for ``.npy`` files, and VTX (ADIOS2 ``.bp``) folders for ParaView."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from dolfinx_lod import folders
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.parallel import LodError, OutputError, collective, validate

_UMASK_LOCK = threading.Lock()
_ABANDONED: list[Any] = []  # writers left open by a fault that not every rank may share
_LEFT: list[Path] = []  # folders deleted once those writers are closed or dropped


def close_writers(comm: MPI.Comm, writers: Sequence[Any], error: BaseException | None) -> None:
    """Close ADIOS2 writers (``dolfinx.io.VTXWriter``) after the work with them ended with
    ``error`` (None: success). Closing is collective: after success, a :class:`LodError`
    (raised on every rank together) or on one rank it happens at once; after anything else
    (Ctrl-C, SIGTERM, a fault on one rank) the other ranks may wait elsewhere, so the writers
    are kept open (and their folders kept, :func:`remove_folder`) for
    :func:`release_writers`."""
    if error is None or isinstance(error, LodError) or comm.size == 1:
        for writer in writers:
            writer.close()
        comm.Barrier()  # rank 0 may still write a closing file when another rank is done
    else:
        _ABANDONED.extend(writers)


def remove_folder(folder: Path) -> None:
    """Delete ``folder``, or after :func:`release_writers` while writers are kept open (a
    writer closed into a deleted folder aborts the process). Rank-local."""
    if _ABANDONED:
        _LEFT.append(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)


def release_writers(comm: MPI.Comm, close: bool) -> None:
    """After an interrupt: close the writers kept open (collective: every rank is known to
    be here) or, with ``close=False``, keep them unclosed (the job is aborted next); then
    delete the folders left for them. Rank-local but for the closing."""
    if close:
        while _ABANDONED:
            _ABANDONED.pop(0).close()
        comm.Barrier()
    while _LEFT:
        shutil.rmtree(_LEFT.pop(), ignore_errors=True)


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _os_message(e: OSError) -> str:
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"


class OutputSet:
    """The result files of one run, written as a set into ``out``. Collective methods.

    The constructor prepares the output collectively before any work. ``out`` must be absent,
    empty or a folder the tool wrote (everything in it is listed in its ``manifest.json``,
    :mod:`dolfinx_lod.folders`); it must not be the working folder, a folder above it, or hold
    one of ``inputs``. A symbolic link ``out`` is followed (a dangling one is refused). A
    staging folder ``.NAME.tmp-XXXXXX`` is created beside it, checked to be writable and seen
    by every rank. Results are written into the staging folder (:meth:`path`); :meth:`commit`
    writes the manifest and replaces ``out`` by the staging folder in one step (a rename
    exchange on Linux), then deletes the earlier results, so ``out`` holds either the complete
    earlier set or the complete new one. A run that fails or is interrupted calls
    :meth:`discard` (the context manager does) and leaves ``out`` as it was. Folders and files
    get the permissions of the umask.

    Args:
        comm: Communicator of the ranks that write.
        out: The result folder.
        option: Its name in messages (the command-line option).
        keep: Glob patterns of files in ``out`` that the new set carries over (hard links),
            e.g. training checkpoints written into ``out`` while the run goes on.
        live: Create ``out`` now (checkpoints are written there during the run); its manifest
            then lists ``keep`` as files the tool writes there.
        inputs: Files (or folders) the run reads.

    Raises:
        OutputError: On every rank, if the folder cannot be prepared or must not be replaced.
    """

    def __init__(
        self,
        comm: MPI.Comm,
        out: str | Path,
        option: str = "`out`",
        keep: Sequence[str] = (),
        live: bool = False,
        inputs: Sequence[str | Path] = (),
    ):
        self.comm, self.given, self.option = comm, out, option
        self.out = Path(os.path.realpath(os.path.abspath(out)))
        self.keep, self.live, self.committed = tuple(keep), live, False
        self.created = False  # rank 0: the live folder is new (removed again if left empty)
        staging = None
        with collective(comm, OutputError):
            if comm.rank == 0:
                staging = self._prepare(inputs)
        self.staging = Path(comm.bcast(staging, root=0))
        try:
            with collective(comm, OutputError):
                if not self.staging.is_dir():
                    raise self._fail(
                        f"rank {comm.rank} does not see the folder {self.staging} (use a file "
                        "system shared by all ranks)"
                    )
        except OutputError:
            self.discard()
            raise

    def _fail(self, what: str) -> OutputError:
        return OutputError(f"cannot write {self.option} {self.given}: {what}")

    def _check(self, inputs: Sequence[str | Path]) -> None:
        """Refuse an ``out`` that must not be replaced. Rank 0."""
        out, given = self.out, Path(os.path.abspath(self.given))
        problem = folders.name_problem(given) or folders.path_conflict(out, inputs, self.option)
        if problem:
            raise self._fail(problem)
        if given.is_symlink() and not out.exists():
            raise self._fail(f"it is a symbolic link to {os.readlink(given)}, which does not exist")
        if out.exists() and not out.is_dir():
            raise self._fail("it exists and is not a folder")
        foreign = folders.foreign_entry(out)
        if foreign is not None:
            raise self._fail(
                f"it holds {foreign}, which dolfinx_lod did not write (not in its "
                f"{folders.MANIFEST}): choose a new or empty folder"
            )

    def _prepare(self, inputs: Sequence[str | Path]) -> Path:
        """Check ``out``, create the staging folder, probe writability. Rank 0."""
        self._check(inputs)
        out = self.out
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if self.live:
                self.created = not out.exists()
                out.mkdir(mode=0o777, exist_ok=True)
                patterns = folders.run_patterns(out) + list(self.keep)
                write_json(out / folders.MANIFEST, folders.manifest(out, patterns))
        except OSError as e:
            raise self._fail(_os_message(e)) from e
        staging = None
        try:
            staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name[:64]}.tmp-"))
            os.chmod(staging, 0o777 & ~umask())
            _probe(staging)
        except OSError as e:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise self._fail(f"cannot create a folder in {out.parent} ({e.strerror or e})") from e
        return staging

    def path(self, name: str) -> Path:
        """Where the result file ``name`` is written (in the staging folder)."""
        return self.staging / name

    def commit(self) -> Path:
        """Replace ``out`` by the new set in one step. Collective (after all writes).

        Raises:
            OutputError: On every rank, if ``out`` cannot be replaced; if a file the tool did
                not write appeared in it during the run, the new set stays in the staging
                folder (named in the message).
        """
        self.comm.Barrier()
        foreign = None
        with collective(self.comm, OutputError):
            if self.comm.rank == 0:
                try:
                    foreign = self._swap()
                except OSError as e:
                    raise self._fail(_os_message(e)) from e
        self.committed = True
        foreign = self.comm.bcast(foreign, root=0)
        if foreign is not None:
            raise self._fail(
                f"{foreign} appeared there during the run and dolfinx_lod did not write it; "
                f"the new results are in {self.staging}"
            )
        return self.out

    def _swap(self) -> str | None:
        """Write the manifest and exchange the folders; the foreign entry of ``out`` that
        prevents it (nothing is changed then), or None. Rank 0."""
        out, staging = self.out, self.staging
        for pattern in self.keep:
            for f in out.glob(pattern):
                if not (staging / f.name).exists():
                    os.link(f, staging / f.name)
        write_json(staging / folders.MANIFEST, folders.manifest(staging, self.keep))
        foreign = folders.foreign_entry(out)
        if foreign is not None:
            return foreign
        if out.is_dir():
            exchange(staging, out)
            shutil.rmtree(staging, ignore_errors=True)  # now the earlier results
        else:
            os.rename(staging, out)
        return None

    def discard(self) -> None:
        """Delete the staging folder (after a failure), and a live ``out`` this set created
        that holds nothing yet. Rank-local, no communication: any failing rank removes it,
        also when the others cannot get there (an aborted job)."""
        if not self.committed:
            remove_folder(self.staging)
            if self.created and folders.entries(self.out) == [folders.MANIFEST]:
                shutil.rmtree(self.out, ignore_errors=True)  # nothing written: as it was

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _probe(folder: Path) -> None:
    """Raise OSError unless a file can be created in ``folder``."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".probe-")
    os.close(fd)
    os.unlink(name)


def exchange(a: Path, b: Path) -> None:
    """Swap the paths of two folders: atomically with Linux ``renameat2(RENAME_EXCHANGE)``,
    else with three renames. Rank-local."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def write_atomic(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file next to ``path`` and
    rename it into place, so a reader never sees a half-written file. The file gets the
    umask's permissions. Rank-local."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically. Rank-local (call on one rank)."""
    return write_atomic(path, lambda f: json.dump(data, f, indent=2, sort_keys=False), mode="w")


def write_npy(path: str | Path, array: npt.NDArray) -> Path:
    """Write a ``.npy`` file atomically. Rank-local."""
    return write_atomic(path, lambda f: np.save(f, array))


def write_vtx(path: str | Path, functions: Sequence[dolfinx.fem.Function], t: float = 0.0) -> Path:
    """Write ``functions`` (all on one function space, e.g. u_ms and u_h on V_h, or the DG0
    coefficient a on T_h) at time ``t`` into the VTX folder ``path`` (``*.bp``) that ParaView
    opens. Collective over the functions' mesh communicator.

    The folder is written as a whole: into a hidden folder beside ``path`` first, which then
    replaces ``path`` in one step (an earlier ``path`` is removed), so a reader never sees a
    half-written one. Write a time series with ``dolfinx.io.VTXWriter`` directly.

    Raises:
        ValueError: On every rank: no functions, functions on different spaces, or ``path``
            not ending in ``.bp``.
        OutputError: On every rank, if the folder cannot be written.
    """
    import dolfinx.io

    functions = list(functions)
    if not functions:
        raise ValueError("write_vtx needs at least one Function")
    V = functions[0].function_space
    comm = V.mesh.comm
    path = Path(os.path.abspath(path))

    def check() -> None:
        if path.suffix != ".bp":
            raise ValueError(f"VTX path must end in .bp, got {path.name}")
        for f in functions[1:]:
            space = f.function_space
            if space.mesh is not V.mesh or space.ufl_element() != V.ufl_element():
                raise ValueError(
                    f"write_vtx: all functions must live on one function space; {f.name!r} is "
                    f"on {space.ufl_element()}, {functions[0].name!r} on {V.ufl_element()} "
                    "(write them into separate .bp folders)"
                )

    validate(comm, check)
    staging = None
    with collective(comm, OutputError):
        if comm.rank == 0:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                staging = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-")
            except OSError as e:
                raise OutputError(f"cannot write {path}: {_os_message(e)}") from e
    folder = Path(comm.bcast(staging, root=0))
    try:
        check_free_space(comm, folder, vtx_bytes(functions, first=True), path.name)
        writer, error = dolfinx.io.VTXWriter(comm, folder / path.name, functions), None
        try:
            writer.write(t)
        except BaseException as e:
            error = e
            raise
        finally:
            close_writers(comm, [writer], error)
        comm.Barrier()
        with collective(comm, OutputError):
            if comm.rank == 0:
                try:
                    if path.exists():
                        exchange(folder / path.name, path)
                    else:
                        os.rename(folder / path.name, path)
                except OSError as e:
                    raise OutputError(f"cannot write {path}: {_os_message(e)}") from e
    finally:
        if comm.rank == 0:
            remove_folder(folder)
    return path


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on the file system of ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def vtx_bytes(functions: Sequence[dolfinx.fem.Function], first: bool) -> int:
    """About the bytes one VTX frame of ``functions`` (one space) takes on disk, with the mesh
    (written with the first frame). Collective (global sizes)."""
    V = functions[0].function_space
    index_map = V.dofmap.index_map
    values = index_map.size_global * V.dofmap.index_map_bs * 8 * len(functions)
    if not first:
        return values
    mesh = V.mesh
    cells = mesh.topology.index_map(mesh.topology.dim).size_global
    nodes = mesh.geometry.index_map().size_global
    return values + nodes * 3 * 8 + cells * mesh.geometry.dofmaps[0].shape[1] * 8


def check_free_space(comm: MPI.Comm, folder: Path, nbytes: int, what: str) -> None:
    """Raise ``OutputError`` on every rank unless ``folder`` has room for ``nbytes`` (with a
    margin). Collective. ADIOS2 cannot recover from a full disk in a collective step (the
    ranks deadlock or the process aborts), so VTX frames are checked before they are written."""
    need = int(nbytes * 1.25) + 4 * 2**20
    with collective(comm, OutputError):
        if comm.rank == 0:
            free = free_bytes(folder)
            if free < need:
                raise OutputError(
                    f"cannot write {what}: no space left on the device of {folder} (about "
                    f"{need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)"
                )


def gather_vertex_array(
    grids: NestedGrids, u: dolfinx.fem.Function, root: int = 0
) -> npt.NDArray[np.float64] | None:
    """Values of a V_h Function at the fine vertices as an (n_y + 1, n_x + 1) array on
    ``root`` (row = y index from the bottom, column = x index from the left; in 3D
    (n_z + 1, n_y + 1, n_x + 1), u[iz, iy, ix], z from the bottom); None on other ranks.

    Collective. The gathered array is fine-scale sized: meant for output files only.
    """
    owned = grids.V_h.dofmap.index_map.size_local
    parts = grids.comm.gather((grids.fine_dof_keys, u.x.array[:owned].copy()), root=root)
    if parts is None:
        return None
    out = np.empty(grids.num_fine_vertices)
    for keys, values in parts:
        out[keys] = values
    return out.reshape(grids.vertex_array_shape)


def gather_cell_array(
    grids: NestedGrids, values: npt.NDArray[np.float64], root: int = 0
) -> npt.NDArray[np.float64] | None:
    """Owned fine-cell values (``grids.fine_cell_keys`` order) as an array of shape
    ``grids.cell_array_shape`` ((n_y, n_x) or (n_z, n_y, n_x)) on ``root`` (None on other
    ranks). Collective; output only."""
    parts = grids.comm.gather((grids.fine_cell_keys, np.asarray(values)), root=root)
    if parts is None:
        return None
    out = np.empty(grids.num_fine_cells)
    for keys, vals in parts:
        out[keys] = vals
    return out.reshape(grids.cell_array_shape)

"""Output: atomic file writes, summary.json, fine-vertex arrays gathered for ``.npy`` files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt

from dolfinx_lod.grids import NestedGrids


def write_atomic(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write a file through ``write(fileobj)`` into a temporary file next to ``path`` and
    rename it into place, so a reader never sees a half-written file. Rank-local."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def gather_vertex_array(
    grids: NestedGrids, u: dolfinx.fem.Function, root: int = 0
) -> npt.NDArray[np.float64] | None:
    """Values of a V_h Function at the fine vertices as an (n+1, n+1) array on ``root``
    (row = y index from the bottom, column = x index from the left); None on other ranks.

    Collective. The gathered array is fine-scale sized: meant for output files only.
    """
    owned = grids.V_h.dofmap.index_map.size_local
    parts = grids.comm.gather((grids.fine_dof_keys, u.x.array[:owned].copy()), root=root)
    if parts is None:
        return None
    out = np.empty((grids.fine + 1) ** 2)
    for keys, values in parts:
        out[keys] = values
    return out.reshape(grids.fine + 1, grids.fine + 1)


def gather_cell_array(
    grids: NestedGrids, values: npt.NDArray[np.float64], root: int = 0
) -> npt.NDArray[np.float64] | None:
    """Owned fine-cell values (``grids.fine_cell_keys`` order) as an (n, n) array on ``root``
    (None on other ranks). Collective; output only."""
    parts = grids.comm.gather((grids.fine_cell_keys, np.asarray(values)), root=root)
    if parts is None:
        return None
    out = np.empty(grids.fine**2)
    for keys, vals in parts:
        out[keys] = vals
    return out.reshape(grids.fine, grids.fine)

"""Start-up hook for the PyPI wheel ``dolfinx-solver-real``: ``import dolfinx`` in any order.

The wheel's compiled modules find ``libmpi.so.12`` only after ``import dolfinx_solver`` has
loaded ``mpi4py.MPI`` (its bootstrap); a script that starts with ``import dolfinx`` fails with
``ImportError: libmpi.so.12``. This file is self-contained (it imports nothing of
``dolfinx_lod``, so it can run at interpreter start-up): installed into a site-packages folder
as the module ``dolfinx_lod_solver_first`` with a ``.pth`` line that imports it, it puts a
finder on ``sys.meta_path`` that, on the first import of ``dolfinx``, ``petsc4py``, ``slepc4py``
or ``adios4dolfinx``, imports ``dolfinx_solver`` first, then steps aside. Nothing is imported
at start-up (no MPI initialisation for a process that never uses DOLFINx), and an environment
without ``dolfinx_solver`` (conda-forge, the official images) is left as it is.

Install it with ``python dolfinx_lod/_solver_first.py [SITE_DIR]`` (``scripts/venv.sh`` does);
SITE_DIR defaults to the running interpreter's first site-packages folder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

MODULE = "dolfinx_lod_solver_first"
#: Top-level packages whose compiled modules need the wheel's bootstrap first.
GUARDED = frozenset({"dolfinx", "petsc4py", "slepc4py", "adios4dolfinx"})


class SolverFirst(importlib.abc.MetaPathFinder):
    """Import ``dolfinx_solver`` before the first guarded package; find nothing itself."""

    def find_spec(self, name, path=None, target=None):  # noqa: D102
        if name.partition(".")[0] in GUARDED and "dolfinx_solver" not in sys.modules:
            remove()
            if importlib.util.find_spec("dolfinx_solver") is not None:
                importlib.import_module("dolfinx_solver")
        return None


def register() -> None:
    """Put one :class:`SolverFirst` at the front of ``sys.meta_path`` (idempotent)."""
    if not any(type(f).__name__ == SolverFirst.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, SolverFirst())


def remove() -> None:
    """Take the finder off ``sys.meta_path`` (it is needed once)."""
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != SolverFirst.__name__]


def bootstrap() -> None:
    """Import ``dolfinx_solver`` where it is installed (the PyPI wheel), then DOLFINx.

    Raises:
        ImportError: DOLFINx cannot be imported, with what to install.
    """
    if "dolfinx_solver" not in sys.modules and importlib.util.find_spec("dolfinx_solver"):
        importlib.import_module("dolfinx_solver")
    try:
        importlib.import_module("dolfinx.fem.petsc")
    except ImportError as error:
        raise ImportError(
            f"dolfinx_lod needs DOLFINx 0.11 with petsc4py, and importing it failed ({error}). "
            "Install DOLFINx 0.11 (conda-forge `fenics-dolfinx=0.11`, the official "
            "dolfinx/dolfinx:v0.11 images) or the PyPI wheel (`pip install dolfinx-solver-real`); "
            "with the wheel, `import dolfinx_solver` must come first unless its start-up hook is "
            "installed (`python -m dolfinx_lod._solver_first`)."
        ) from error


def install(site_dir: Path) -> Path:
    """Write this module and its ``.pth`` line into ``site_dir``; return the ``.pth`` path."""
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / f"{MODULE}.py").write_text(Path(__file__).read_text())
    pth = site_dir / f"{MODULE}.pth"
    pth.write_text(f"import {MODULE}; {MODULE}.register()\n")
    return pth


if __name__ == "__main__":
    import site

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(site.getsitepackages()[0])
    print(install(target))

"""Import order and DOLFINx builds: `import dolfinx` first, a hidden dolfinx_solver."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "dolfinx_lod" / "_solver_first.py"
SOLVE = (
    "from mpi4py import MPI; import numpy as np; "
    "g = dolfinx_lod.create_nested_grids(MPI.COMM_SELF, coarse=2, fine=4); "
    "s = dolfinx_lod.solve_elliptic(g, np.ones((4, 4)), layers=1); "
    "print('solved', s.u_ms.x.array.max() > 0); s.destroy()"
)


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.fixture(scope="module")
def hook_site(tmp_path_factory) -> Path:
    """A site folder with the start-up hook exactly as scripts/venv.sh installs it."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(HOOK), str(site)], check=True, capture_output=True)
    return site


@pytest.mark.parametrize(
    "order",
    [
        "import dolfinx, dolfinx.fem.petsc; import dolfinx_lod",
        "import petsc4py.PETSc; import dolfinx_lod, dolfinx",
        "import dolfinx_lod; import dolfinx, dolfinx.fem.petsc",
    ],
)
def test_any_import_order_with_the_startup_hook(hook_site, order):
    out = python(f"import site; site.addsitedir({str(hook_site)!r}); {order}; {SOLVE}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "solved True"


def test_the_hook_imports_nothing_at_startup(hook_site):
    out = python(
        f"import site, sys; site.addsitedir({str(hook_site)!r}); "
        "print(sorted(m for m in ('mpi4py.MPI', 'dolfinx', 'dolfinx_solver') if m in sys.modules))"
    )
    assert out.stdout.strip() == "[]", out.stderr


HIDE = "import sys; sys.modules['dolfinx_solver'] = None; "


def test_package_works_where_dolfinx_solver_is_not_installed():
    """A conda-forge / official-image DOLFINx: no dolfinx_solver, MPI found by the linker
    (simulated by loading mpi4py.MPI first, as the system libmpi would be)."""
    out = python(HIDE + "import mpi4py.MPI; import dolfinx; import dolfinx_lod; " + SOLVE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "solved True"


def test_missing_dolfinx_says_what_to_install():
    out = python(HIDE + "import dolfinx_lod")
    assert out.returncode != 0
    assert "Install DOLFINx 0.11" in out.stderr and "dolfinx-solver-real" in out.stderr

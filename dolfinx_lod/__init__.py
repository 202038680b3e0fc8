"""dolfinx_lod: localized orthogonal decomposition (LOD) for DOLFINx.

Numerical homogenization of -div(a grad u) = f (and its parabolic counterpart) on a coarse
quadrilateral mesh T_H with fine-scale correctors computed on a nested fine mesh T_h.
"""

from importlib.metadata import PackageNotFoundError, version

from dolfinx_lod._solver_first import bootstrap

bootstrap()  # dolfinx_solver first where the PyPI wheel is installed, then DOLFINx

from dolfinx_lod.basis import MultiscaleBasis  # noqa: E402
from dolfinx_lod.coefficients import coefficient_function  # noqa: E402
from dolfinx_lod.correctors import ClassicalCorrectors, CorrectorProvider  # noqa: E402
from dolfinx_lod.grids import NestedGrids, create_nested_grids  # noqa: E402
from dolfinx_lod.io import write_vtx  # noqa: E402
from dolfinx_lod.lod import EllipticSolution, FineSystem, solve_elliptic  # noqa: E402
from dolfinx_lod.user_mesh import nested_grids_from_mesh  # noqa: E402

try:
    __version__ = version("dolfinx_lod")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ClassicalCorrectors",
    "CorrectorProvider",
    "EllipticSolution",
    "FineSystem",
    "MultiscaleBasis",
    "NestedGrids",
    "__version__",
    "coefficient_function",
    "create_nested_grids",
    "nested_grids_from_mesh",
    "solve_elliptic",
    "write_vtx",
]

"""write_vtx: VTX folders for ParaView, written as a whole, collective."""

import dolfinx.fem
import numpy as np
import pytest
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.io import write_vtx

pytestmark = pytest.mark.mpi


@pytest.fixture
def folder(comm, tmp_path):
    return type(tmp_path)(comm.bcast(str(tmp_path), root=0))


def test_write_vtx_writes_and_replaces(comm, folder):
    g = dl.create_nested_grids(comm, (2, 1), (8, 4), ((0.0, 0.0), (2.0, 1.0)))
    sol = dl.solve_elliptic(g, np.ones(g.cell_array_shape), 1, reference=True)
    path = folder / "out" / "solution.bp"
    assert write_vtx(path, [sol.u_ms, sol.u_h]) == path
    first = (path / "md.0").read_bytes()
    assert b'<DataArray Name="u_ms" />' in first and b'<DataArray Name="u_h" />' in first
    write_vtx(path, [sol.u_ms], t=1.0)  # replaces the folder as a whole
    assert b'<DataArray Name="u_h" />' not in (path / "md.0").read_bytes()
    write_vtx(folder / "coefficient.bp", [sol.a])
    assert b'Name="a"' in (folder / "coefficient.bp" / "md.0").read_bytes()
    comm.Barrier()
    leftovers = [p.name for p in (folder / "out").iterdir() if p.name != "solution.bp"]
    assert leftovers == []  # no staging folder left behind
    with pytest.raises(ValueError, match="all functions must live on one function space"):
        write_vtx(folder / "mixed.bp", [sol.u_ms, sol.a])
    with pytest.raises(ValueError, match=r"VTX path must end in \.bp"):
        write_vtx(folder / "solution.vtx", [sol.u_ms])
    with pytest.raises(ValueError, match="at least one Function"):
        write_vtx(folder / "none.bp", [])
    assert not (folder / "mixed.bp").exists()
    sol.destroy()


def test_user_callables_get_points_of_shape_3_n(comm):
    """a(x), f(x), f(t, x) and u0(x) all receive x of shape (3, N), as DOLFINx
    interpolation callables do (x[2] = 0 in 2D)."""
    from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

    g = dl.create_nested_grids(comm, (4, 2), (8, 4), ((0.0, 0.0), (2.0, 1.0)))
    shapes = []

    def record(x):
        shapes.append((x.shape[0], bool(np.all(x[2] == 0.0))))
        return 1.0 + x[0] * 0.0

    f = dolfinx.fem.Function(g.V_h)
    f.interpolate(record)  # DOLFINx's own convention, for comparison
    sol = dl.solve_elliptic(g, record, 1, f=record)
    sol.destroy()
    res = run_parabolic(
        g,
        CoefficientSchedule.from_data(record),
        T=0.1,
        steps=1,
        layers=1,
        source=lambda t, x: record(x),
        u0=record,
    )
    res.basis.destroy()
    assert len(shapes) >= 6 and set(shapes) == {(3, True)}, shapes
    assert comm.allreduce(len(shapes), op=MPI.MIN) >= 6

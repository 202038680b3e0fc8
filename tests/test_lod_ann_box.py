"""LOD-ANN on the user's problem: the coefficient-aware network on rectangles with Neumann
sides (exact minimizer, train -> elliptic --model end to end) and the errors for bad input."""

import json

import numpy as np
import pytest
import torch
from helpers import cli_main
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.neural import LearnedCorrectors, TrainedModel, export_patches
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.samples import sample_family

DOMAIN = ((0.0, 0.0), (2.0, 1.0))
NEUMANN = ("left", "top")


def test_projected_energy_minimizer_with_neumann_sides():
    """On a 2 x 1 rectangle with Neumann sides, min over y of the Deep Ritz energy of the
    network's alpha = Q y is the classical corrector for every patch (those whose correctors
    are free on a Neumann side included), and alpha is zero only on the patch sides where the
    correctors vanish."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, (6, 3), (24, 12), DOMAIN, neumann=NEUMANN)
    basis = dl.MultiscaleBasis(g, 1)
    rng = np.random.default_rng(4)
    family = sample_family(np.exp(rng.normal(0.0, 1.0, (1, 12, 24))), domain=g.domain)
    batch = export_patches(basis, family.a, family.training_parameters(1), dtype=torch.float64)
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3).double()
    groups = nets.geometry(batch.configs)[1]
    checked_neumann = 0
    for index, verts, maps in groups:
        Q = maps(torch.eye(verts.numel(), dtype=torch.float64), True).T
        for gi in index.tolist():
            n = int(batch.num_vertices[gi])
            S = batch.stiffness(gi).to_dense()[0]
            F = batch.F[gi, 0, :n]
            y = torch.linalg.lstsq(Q.T @ S @ Q, Q.T @ F, driver="gelsd").solution
            d = Q @ y - batch.C[gi, 0, :n]
            C = batch.C[gi, 0, :n]
            assert torch.sqrt((d * (S @ d)).sum()) <= 1e-7 * torch.sqrt((C * (S @ C)).sum())
            checked_neumann += bool(batch.configs[gi].neumann_sides().any())
    assert checked_neumann > 0
    basis.destroy()


BOX = ["--coarse", "4,2", "--fine", "16,8", "--layers", 1, "--domain", "0,0,2,1"]
BOX += ["--neumann", ",".join(NEUMANN)]


@pytest.mark.mpi
def test_train_on_a_rectangle_with_neumann_sides(tmp_dir, capsys, comm):
    """train --domain --coarse NX,NY --fine NX,NY --neumann on given fields, then elliptic
    --model on the same box: the learned solution of the CLI is the library's; a model for
    other sides or another box is refused (exit 2, one message naming the option)."""
    if comm.rank == 0:
        rng = np.random.default_rng(9)
        np.save(tmp_dir / "train.npy", np.exp(rng.normal(0.0, 1.0, (3, 8, 16))))
        np.save(tmp_dir / "test.npy", np.exp(rng.normal(0.0, 1.0, (1, 8, 16))))
    comm.Barrier()
    train = ["train", "--coefficients", tmp_dir / "train.npy", "--test-coefficients"]
    train += [tmp_dir / "test.npy", *BOX, "--network", "cnn:8x3", "--epochs", 3]
    assert cli_main([*train, "--out", tmp_dir / "m"], capsys)[0] == 0
    summary = json.loads((tmp_dir / "m" / "summary.json").read_text())
    assert (summary["n"], summary["NH"], summary["neumann"]) == ([16, 8], [4, 2], sorted(NEUMANN))
    assert summary["domain"] == [[0.0, 0.0], [2.0, 1.0]]
    model = tmp_dir / "m" / "model.pt"
    solve = ["elliptic", "--coefficient", tmp_dir / "A.npy", "--no-plot", "--model", model]
    A = np.exp(np.random.default_rng(2).normal(0.0, 1.0, (8, 16)))
    np.save(tmp_dir / "A.npy", A) if comm.rank == 0 else None
    comm.Barrier()
    assert cli_main([*solve, *BOX, "--out", tmp_dir / "e"], capsys)[0] == 0
    g = dl.create_nested_grids(comm, (4, 2), (16, 8), DOMAIN, neumann=NEUMANN)
    learned = LearnedCorrectors(TrainedModel.load(model, g, 1), None, g.r)
    sol = dl.solve_elliptic(g, A, 1, provider=learned)
    u = dl.io.gather_vertex_array(g, sol.u_ms)
    if comm.rank == 0:
        u_cli = np.load(tmp_dir / "e" / "solution.npy")
        assert np.abs(u_cli - u).max() <= 1e-10 * np.abs(u).max()
    sol.destroy()
    for other, message in (
        (BOX[:-1] + ["left"], "model.pt: model does not match the problem: neumann is"),
        (BOX[:-4] + ["--neumann", "left,top"], "domain is"),
    ):
        code, err = cli_main([*solve, *other, "--out", tmp_dir / "x"], capsys)
        assert code == 2 and (comm.rank or message in err), err


@pytest.mark.mpi
def test_train_box_input_errors(tmp_dir, capsys, comm):
    """Bad box input to train: one clear message naming the option, exit 2, on every rank."""
    if comm.rank == 0:
        np.save(tmp_dir / "t.npy", np.ones((2, 8, 16)))
        np.save(tmp_dir / "t3.npy", np.ones((2, 8, 8, 8)))
    comm.Barrier()
    base = ["train", "--test-coefficients", tmp_dir / "t.npy", "--out", tmp_dir / "x"]
    cases = (
        (["--coefficients", tmp_dir / "t.npy", *BOX[:2], "--fine", "8,16", *BOX[4:]],
         "--coefficients fields are 16 x 8"),
        (["--coefficients", tmp_dir / "t3.npy", *BOX], "--fine 16,8 has 2 counts; the --coeff"),
        (["--coefficients", tmp_dir / "t.npy", "--coarse", "4,2,2", *BOX[2:]], "--coarse 4,2,2"),
        (["--coefficients", tmp_dir / "t.npy", *BOX[:-1], "front"], "neumann"),
        (["--family", "cont", "--samples", 2, *BOX], "--family cont is defined on n x n"),
        (["--coefficients", tmp_dir / "t.npy", *BOX[:7], "0,0,1,1"], "square fine cells"),
    )  # fmt: skip
    for extra, message in cases:
        code, err = cli_main([*base, *extra], capsys)
        assert code == 2 and (comm.rank or message in err), (extra, err)

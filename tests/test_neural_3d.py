"""LOD-ANN in 3D: export of hexahedral patches, p-conditioned networks (reduced and the paper's
MLP), the gathered model and the learned provider through the global basis."""

import numpy as np
import pytest
import torch

import dolfinx_lod as dl
from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import UNIT_CUBE
from dolfinx_lod.neural import (
    DeepRitzTrainer,
    FixedCorrectors,
    LearnedCorrectors,
    TrainedModel,
    TrainingSettings,
    export_patches,
)
from dolfinx_lod.neural.provider import compare_providers, problem_metadata, scale_parameters

pytestmark = pytest.mark.mpi

SMOOTH3 = Family(
    "smooth3",
    (0.0,),
    (1.0,),
    lambda x, p: 1 + 0.9 * np.sin(5 * x[0] + 3 * p[0]) * np.cos(4 * x[1] - 2 * p[0] + 3 * x[2]),
)


@pytest.fixture(scope="module")
def tiny3(comm):
    """H = 1/3, h = 1/6, l = 1 in 3D, four training parameters."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(comm, 3, 6, UNIT_CUBE)
    basis = dl.MultiscaleBasis(g, 1)
    train = SMOOTH3.training_parameters(4)
    return g, basis, train, export_patches(basis, SMOOTH3.a, train)


def test_3d_export_shapes_and_saddle_point_equations(tiny3):
    g, basis, train, batch = tiny3
    G, K, N = batch.shape
    assert batch.coords.shape == (G, N, 3) and batch.F.shape == (G, K, N, 8)
    for gi in range(G):
        n = int(batch.num_vertices[gi])
        S = batch.stiffness(gi).to_dense().double()
        C, F = batch.C[gi, :, :n].double(), batch.F[gi, :, :n].double()
        B = torch.tensor(
            dl.interpolation.patch_constraints(batch.configs[gi], g.r, basis.Pi),
            dtype=torch.float64,
        )
        assert (B @ C).abs().max() < 1e-6
        residual = S @ C - F  # in range(B^T)
        mu = torch.linalg.lstsq(B.T.expand(C.shape[0], -1, -1), residual).solution
        assert (residual - B.T @ mu).abs().max() < 1e-4 * residual.abs().max()


def test_3d_reduced_networks_train_and_provide_a_better_basis(tiny3):
    g, basis, train, batch = tiny3
    settings = TrainingSettings(
        architecture="reduced", modes=8, width=16, depth=2, epochs=800, lr=1e-2
    )
    trainer = DeepRitzTrainer(batch, scale_parameters(SMOOTH3, train), settings, g.comm)
    trainer.train()
    meta = {**problem_metadata(g, 1, SMOOTH3), "num_params": 1, "architecture": "reduced"}
    model = TrainedModel.gather(g.comm, batch, trainer.nets, {**meta, "width": 16, "depth": 2})
    learned = LearnedCorrectors(model, SMOOTH3, g.r)
    sizes = zip(batch.cells, batch.num_vertices, strict=True)
    zero = FixedCorrectors({c: np.zeros((int(n), 8)) for c, n in sizes})
    errors = compare_providers(g, 1, SMOOTH3, np.array([[0.4]]), {"learned": learned, "none": zero})
    assert errors["learned"]["energy"] < 0.3 * errors["none"]["energy"], errors


def test_3d_paper_architecture_vanishes_on_the_patch_boundary(tiny3):
    g, basis, train, batch = tiny3
    settings = TrainingSettings(architecture="mlp", width=8, depth=2, epochs=30, lr=1e-3)
    trainer = DeepRitzTrainer(batch, scale_parameters(SMOOTH3, train), settings, g.comm)
    trainer.train()
    h = trainer.history
    assert h.energy[-1] + h.penalty[-1] < h.energy[0] + h.penalty[0]
    with torch.no_grad():
        alpha = trainer.outputs()
    assert alpha.shape[-1] == 8
    x = batch.coords
    boundary = ((x == 0) | (x == 1)).any(dim=-1)
    assert alpha[boundary[:, None].expand(-1, alpha.shape[1], -1)].abs().max() == 0
    assert alpha.abs().max() > 0

"""Coefficient-aware LOD-ANN: the exact projection onto ker B, the data-free Deep Ritz
minimizer, training from coefficients alone and the command line with --model."""

import sys

import numpy as np
import pytest
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural import export_patches
from dolfinx_lod.neural.networks import CoefficientNetworks
from dolfinx_lod.neural.training import (
    DeepRitzTrainer,
    TrainingSettings,
    deep_ritz_energy,
    energy_weights,
)
from dolfinx_lod.patches import Configuration

CLI = [sys.executable, "-m", "dolfinx_lod.cli"]


@pytest.fixture(scope="module")
def tiny():
    """H = 1/4, h = 1/16, l = 1: all 16 patches (9 configurations), two rough coefficients,
    exported in float64 with the classical correctors."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 4, 16)
    basis = dl.MultiscaleBasis(g, 1)
    fam = dl.coefficients.sample_family(
        np.stack([dl.coefficients.random_coefficient(16, 0.01, 1.0, s) for s in (1, 2)])
    )
    batch = export_patches(basis, fam.a, fam.training_parameters(2), dtype=torch.float64)
    yield g, basis, batch
    basis.destroy()


def output_maps(nets: CoefficientNetworks, batch) -> list[torch.Tensor]:
    """Per patch the network's linear map Q from its vertex values y to alpha (with the
    projection)."""
    maps = [None] * len(batch.configs)
    for index, _, _, Q in nets.geometry(batch.configs)[1]:
        for g in index.tolist():
            maps[g] = Q
    return maps


def test_projected_outputs_satisfy_the_constraint(tiny):
    """B alpha = 0 to rounding for the classical B of every patch, alpha = 0 on the patch
    boundary, and unprojected outputs violate the constraint (the test can fail)."""
    g, basis, batch = tiny
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3).double()
    with torch.no_grad():
        alpha = nets(batch.configs, batch.a, project=True)
        raw = nets(batch.configs, batch.a, project=False)
    for gi, config in enumerate(batch.configs):
        n = int(batch.num_vertices[gi])
        B = torch.tensor(patch_constraints(config, g.r, basis.Pi))
        scale = alpha[gi, :, :n].abs().max()
        assert (B @ alpha[gi, :, :n]).abs().max() <= 1e-10 * scale
        assert (B @ raw[gi, :, :n]).abs().max() > 1e-4 * scale
        wx, wy = config.shape
        grid = alpha[gi, :, :n].reshape(2, wy * g.r + 1, wx * g.r + 1, 4)
        for edge in (grid[:, 0], grid[:, -1], grid[:, :, 0], grid[:, :, -1]):
            assert edge.abs().max() == 0.0
        assert (alpha[gi, :, n:] == 0).all()  # padding


def test_projected_energy_minimizer_is_the_classical_corrector(tiny):
    """min over y of the Deep Ritz energy (14) of the network's alpha = Q y (preconditioned,
    projected; no corrector data) is the classical corrector of the PETSc saddle-point solve,
    for every patch and coefficient."""
    g, basis, batch = tiny
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3).double()
    for gi, Q in enumerate(output_maps(nets, batch)):
        n = int(batch.num_vertices[gi])
        S = batch.stiffness(gi).to_dense()  # (K, n, n)
        for k in range(2):
            F = batch.F[gi, k, :n]
            y = torch.linalg.lstsq(Q.T @ S[k] @ Q, Q.T @ F, driver="gelsd").solution
            alpha = Q @ y
            C = batch.C[gi, k, :n]
            err = torch.sqrt(((alpha - C) * (S[k] @ (alpha - C))).sum())
            assert err <= 1e-7 * torch.sqrt((C * (S[k] @ C)).sum())


def test_same_patch_coefficient_same_correctors(tiny):
    """One network for all patches: the same coefficient on patches of one configuration at
    two positions of a batch gives the same correctors, whatever the other patches hold."""
    g, basis, batch = tiny
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3)
    inner = Configuration((3, 3), (1, 1), (False,) * 4)  # an interior patch (N_H >= 5)
    configs = [inner, batch.configs[0], inner]
    a = torch.rand(3, 1, 144, generator=torch.Generator().manual_seed(0)) + 0.01
    a[2] = a[0]
    with torch.no_grad():
        alpha = nets(configs, a)
    assert alpha[0].abs().max() > 0
    torch.testing.assert_close(alpha[0], alpha[2], rtol=1e-5, atol=1e-7)


def test_coefficient_aware_training_beats_the_mean_corrector(tiny):
    """Trained from the coefficients alone (projection, no multipliers, no correctors), the
    held-out energy error is well below that of the mean training corrector."""
    g, basis, _ = tiny
    rng = np.random.default_rng(5)
    fields = np.exp(rng.normal(0.0, 1.0, (12, 16, 16)))  # log-normal cell values
    fam = dl.coefficients.sample_family(fields)
    train = export_patches(basis, fam.a, np.arange(8.0)[:, None])
    test = export_patches(basis, fam.a, np.arange(8.0, 12.0)[:, None])
    settings = TrainingSettings(
        architecture="cnn",
        width=16,
        depth=4,
        constraint="projection",
        batch_size=2,
        epochs=30,
        lr=1e-2,
        lr_step=10**6,
        patience=10**6,
    )
    trainer = DeepRitzTrainer(train, torch.zeros(8, 1), settings, MPI.COMM_SELF)
    trainer.train()
    assert not settings.uses_corrector_data and trainer.history.penalty[-1] == 0.0

    def error(alpha):
        d = alpha.double() - test.C.double()
        Sd = test.apply_stiffness(d.float()).double()
        SC = test.apply_stiffness(test.C).double()
        return ((d * Sd).sum(2) / (test.C.double() * SC).sum(2)).sqrt().mean()

    with torch.no_grad():
        learned = error(trainer.outputs(test))
    mean = error(train.C.mean(1, keepdim=True).expand_as(test.C))
    assert learned < 0.65 * mean
    # The weighted energy the trainer minimized is lower at the learned correctors than at the
    # mean ones (both in ker B): it measures the energy error without corrector data.
    w = energy_weights(test)
    assert deep_ritz_energy(test, trainer.outputs(test).detach(), w) < deep_ritz_energy(
        test, train.C.mean(1, keepdim=True).expand_as(test.C), w
    )

"""Coefficient-aware LOD-ANN: the exact projection onto ker B, the data-free Deep Ritz
minimizer, training from coefficients alone and the command line with --model."""

import json

import numpy as np
import pytest
import torch
from helpers import cli_main
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural import (
    LearnedCorrectors,
    NearestCoefficientCorrectors,
    TrainedModel,
    export_patches,
)
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.neural.losses import deep_ritz_energy, energy_weights
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.trainer import DeepRitzTrainer
from dolfinx_lod.patches import Configuration
from dolfinx_lod.samples import sample_family


@pytest.fixture(scope="module")
def tiny():
    """H = 1/4, h = 1/16, l = 1: all 16 patches (9 configurations), two rough coefficients,
    exported in float64 with the classical correctors."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 4, 16)
    basis = dl.MultiscaleBasis(g, 1)
    fam = sample_family(
        np.stack([dl.coefficients.random_coefficient(16, 0.01, 1.0, s) for s in (1, 2)])
    )
    batch = export_patches(basis, fam.a, fam.training_parameters(2), dtype=torch.float64)
    yield g, basis, batch
    basis.destroy()


def output_maps(nets: CoefficientNetworks, batch) -> list[torch.Tensor]:
    """Per patch the network's linear map Q from its vertex values y to alpha (with the
    projection)."""
    maps = [None] * len(batch.configs)
    for index, verts, patch_maps in nets.geometry(batch.configs)[1]:
        Q = patch_maps(torch.eye(verts.numel(), dtype=torch.float64), True).T
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


def test_data_free_loss_has_the_gradient_of_the_supervised_energy_error(tiny):
    """With the projection, the data-free weighted energy and the supervised energy-norm error
    1/2 sum w ||alpha - C||_S^2 differ by a constant: their gradients in the network weights
    agree, so training from coefficients alone follows the supervised path exactly."""
    g, basis, batch = tiny
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3).double()
    w = energy_weights(batch)

    def gradients(project: bool) -> list[torch.Tensor]:
        out = []
        for supervised in (False, True):
            nets.zero_grad()
            alpha = nets(batch.configs, batch.a, project)
            if supervised:
                d = alpha - batch.C
                loss = 0.5 * (w[:, :, None, None] * d * batch.apply_stiffness(d)).sum()
                loss = loss / d.shape[1]
            else:
                loss = deep_ritz_energy(batch, alpha, w)
            loss.backward()
            out.append(torch.cat([q.grad.ravel() for q in nets.parameters()]))
        return out

    free, supervised = gradients(True)
    torch.testing.assert_close(free, supervised, rtol=1e-6, atol=1e-9 * supervised.abs().max())
    free, supervised = gradients(False)  # outputs outside ker B: they differ (can fail)
    assert (free - supervised).abs().max() > 1e-3 * supervised.abs().max()


def test_same_patch_coefficient_same_correctors(tiny):
    """One network for all patches: the same coefficient on patches of one configuration at
    two positions of a batch gives the same correctors, whatever the other patches hold, and
    so does the coefficient times a constant (like the classical correctors)."""
    g, basis, batch = tiny
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3)
    inner = Configuration((3, 3), (1, 1), (False,) * 4)  # an interior patch (N_H >= 5)
    configs = [inner, batch.configs[0], inner]
    a = torch.rand(3, 1, 144, generator=torch.Generator().manual_seed(0)) + 0.01
    a[2] = 7.0 * a[0]
    with torch.no_grad():
        alpha = nets(configs, a)
    assert alpha[0].abs().max() > 0
    torch.testing.assert_close(alpha[0], alpha[2], rtol=1e-5, atol=1e-6)  # float32 rounding


def test_nearest_coefficient_baseline(tiny):
    """The nearest-coefficient baseline returns, per patch, the classical correctors of the
    training sample nearest on that patch: those of the sample itself for a training
    coefficient, also scaled, and the other sample's where only its patch matches."""
    g, basis, batch = tiny
    nearest = NearestCoefficientCorrectors(batch)
    a0, a1 = (batch.a[:, k].double().numpy() for k in range(2))
    sizes = [int(np.prod(c.shape)) * g.r**2 for c in batch.configs]
    mixed = [(a1 if i == 5 else a0)[i, :m] for i, m in enumerate(sizes)]
    for a_patches, picks in (
        ([3.0 * a1[i, :m] for i, m in enumerate(sizes)], [1] * len(sizes)),
        (mixed, [1 if i == 5 else 0 for i in range(len(sizes))]),
    ):
        found = nearest.correctors(basis.patches, a_patches)
        for i, (C, k) in enumerate(zip(found, picks, strict=True)):
            n = int(batch.num_vertices[i])
            np.testing.assert_array_equal(C, batch.C[i, k, :n].numpy())


def test_energy_weights_are_the_element_energies(tiny):
    """w_T = 1 / sum_j ||Lambda_j||_{a,T}^2 on every cell, boundary cells included: 3 / (8 a)
    for a constant a (a bilinear hat has energy 2/3 on a square), sum_j F_j^T Lambda_j where T
    does not touch the boundary, and positive on the battery cell (whose collectors made
    F_j^T Lambda_j negative at the boundary)."""
    g, basis, batch = tiny
    const = sample_family(np.full((1, 16, 16), 2.5))
    batch1 = export_patches(basis, const.a, np.zeros((1, 1)), False, torch.float64)
    assert torch.allclose(energy_weights(batch1), torch.full((16, 1), 3 / 20, dtype=torch.float64))
    i, j = batch.cells % 4, batch.cells // 4
    interior = torch.as_tensor((i % 3 != 0) & (j % 3 != 0))
    assert interior.sum() == 4
    F_hats = (batch.F * batch.hats[:, None]).sum(dim=(2, 3))
    assert torch.allclose(batch.energy[interior], F_hats[interior], rtol=1e-12)
    assert (batch.energy > 0).all()
    battery = dl.coefficients.battery_family(16)
    params = battery.training_parameters(3)
    batch3 = export_patches(basis, battery.a, params, False, torch.float64)
    assert (energy_weights(batch3) > 0).all()


def test_coefficient_aware_training_beats_the_mean_corrector(tiny):
    """Trained from the coefficients alone (projection, no multipliers, no correctors), the
    held-out energy error is well below that of the mean training corrector."""
    g, basis, _ = tiny
    rng = np.random.default_rng(5)
    fields = np.exp(rng.normal(0.0, 1.0, (12, 16, 16)))  # log-normal cell values
    fam = sample_family(fields)
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


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Training and held-out coefficient stacks and a 3-step stack, n = 16 (rank 0's folder
    on every rank)."""
    folder = MPI.COMM_WORLD.bcast(tmp_path_factory.mktemp("fields"), root=0)
    if MPI.COMM_WORLD.rank == 0:
        rng = np.random.default_rng(7)
        for name, count in (("train", 4), ("test", 2), ("steps", 3)):
            np.save(folder / f"{name}.npy", np.exp(rng.normal(0.0, 1.0, (count, 16, 16))))
    MPI.COMM_WORLD.Barrier()
    return folder


SIZES = ["--coarse", 4, "--fine", 16, "--layers", 1]


@pytest.mark.mpi
def test_cli_train_on_fields_and_apply_the_model(fields, tmp_dir, capsys, comm):
    """train --coefficients/--test-coefficients (data-free), then elliptic and parabolic with
    --model: the learned basis of the model, exactly as the library computes it."""
    out = tmp_dir / "cnn"
    train = ["train", "--coefficients", fields / "train.npy", *SIZES, "--network", "cnn:8x3"]
    code, err = cli_main([*train, "--out", out], capsys)
    assert code == 2 and "--coefficients needs --test-coefficients" in err or comm.rank
    train += ["--test-coefficients", fields / "test.npy", "--epochs", 4]
    train += ["--lr-step", 2, "--lr-decay", 0.5]
    assert cli_main([*train, "--out", out], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["settings"]["lr_step"], summary["settings"]["lr_decay"]) == (2, 0.5)
    assert summary["uses_corrector_data"] is False and summary["architecture"] == "cnn"
    assert (summary["samples"], summary["test_samples"]) == (4, 2)
    assert set(summary["baseline_errors_test"]) == {"none", "mean"}  # no p: no nearest
    assert summary["settings"]["constraint"] == "projection"
    model = out / "model.pt"
    A = np.load(fields / "test.npy")[0]
    np.save(tmp_dir / "A.npy", A) if comm.rank == 0 else None
    comm.Barrier()
    solve = ["elliptic", "--coefficient", tmp_dir / "A.npy", "--coarse", 4, "--layers", 1]
    assert cli_main([*solve, "--model", model, "--no-plot", "--out", tmp_dir / "e"], capsys)[0] == 0
    summary = json.loads((tmp_dir / "e" / "summary.json").read_text())
    assert summary["basis"] == "learned" and summary["model"] == str(model)
    g = dl.create_nested_grids(comm, 4, 16)
    learned = LearnedCorrectors(TrainedModel.load(model, g, 1), None, g.r)
    sol = dl.solve_elliptic(g, A, 1, provider=learned)
    classical = dl.solve_elliptic(g, A, 1)
    u = dl.io.gather_vertex_array(g, sol.u_ms)
    u_classical = dl.io.gather_vertex_array(g, classical.u_ms)
    if comm.rank == 0:
        u_cli = np.load(tmp_dir / "e" / "solution.npy")
        assert np.abs(u_cli - u).max() <= 1e-10 * np.abs(u).max()
        assert np.abs(u_cli - u_classical).max() > 1e-6 * np.abs(u).max()  # not the classical
    sol.destroy()
    classical.destroy()
    steps = ["parabolic", "--coefficients", fields / "steps.npy", "--coarse", 4, "--layers", 1]
    steps += ["--T", 0.1, "--steps", 3, "--no-plot", "--model", model, "--out", tmp_dir / "p"]
    assert cli_main(steps, capsys)[0] == 0
    summary = json.loads((tmp_dir / "p" / "summary.json").read_text())
    assert summary["basis"] == "learned" and summary["model"] == str(model)
    # A model for other grids: the existing clear error, before any work.
    code, err = cli_main([*solve[:3], "--coarse", 2, "--layers", 1, "--model", model, "--out",
                          tmp_dir / "x"], capsys)  # fmt: skip
    assert code == 2 and (comm.rank or "model does not match the problem: NH is 4" in err)


def test_cli_p_conditioned_model_needs_its_parameter(tmp_path, capsys):
    """A model of networks conditioned on p: elliptic needs --param, parabolic --params (one
    per step, in the family's range); --param without --model and p-networks on given fields
    are refused, each with one clear message."""
    out = tmp_path / "mlp"
    train = ["train", "--family", "cont", *SIZES, "--samples", 2, "--test-samples", 1]
    train += ["--network", "mlp:4x1", "--epochs", 2]
    assert cli_main([*train, "--out", out], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["uses_corrector_data"] is False and summary["settings"]["constraint"] == "penalty"
    )
    model = out / "model.pt"
    A = tmp_path / "A.npy"
    np.save(A, np.exp(np.random.default_rng(1).normal(0.0, 1.0, (16, 16))))
    solve = ["elliptic", "--coefficient", A, "--coarse", 4, "--layers", 1, "--no-plot"]
    code, err = cli_main([*solve, "--model", model, "--out", tmp_path / "e"], capsys)
    assert code == 2 and "conditioned on the parameter p of family 'cont'" in err
    assert "give --param" in err and not (tmp_path / "e").exists()
    code, err = cli_main([*solve, "--model", model, "--param", 3, "--out", tmp_path / "e"], capsys)
    assert code == 2 and "--param: parameter p of family 'cont' must have 1 entries" in err
    code, err = cli_main([*solve, "--param", 0.5, "--out", tmp_path / "e"], capsys)
    assert code == 2 and "--param applies to --model only" in err
    code, err = cli_main(
        [*solve, "--model", model, "--param", 0.5, "--out", tmp_path / "e"], capsys
    )
    assert code == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["basis"] == "learned"
    stack = tmp_path / "S.npy"
    np.save(stack, np.exp(np.random.default_rng(2).normal(0.0, 1.0, (2, 16, 16))))
    steps = ["parabolic", "--coefficients", stack, "--coarse", 4, "--layers", 1, "--T", 0.1]
    steps += ["--steps", 2, "--no-plot", "--model", model]
    code, err = cli_main([*steps, "--out", tmp_path / "p"], capsys)
    assert code == 2 and "give --params" in err
    np.save(tmp_path / "P.npy", np.array([0.3, 0.4, 0.5]))
    code, err = cli_main([*steps, "--params", tmp_path / "P.npy", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "--params must have shape (M,) or (M, N_p) with M = 2" in err
    np.save(tmp_path / "P.npy", np.array([0.3, 0.4]))
    code, err = cli_main([*steps, "--params", tmp_path / "P.npy", "--out", tmp_path / "p"], capsys)
    assert code == 0
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["basis"] == "learned"
    fields = ["train", "--coefficients", stack, "--test-coefficients", stack, *SIZES]
    code, err = cli_main([*fields, "--network", "mlp:4x1", "--out", tmp_path / "f"], capsys)
    assert code == 2 and "conditioned on the family parameter p" in err


@pytest.mark.mpi
def test_shared_network_training_does_not_depend_on_the_ranks(comm):
    """The CNN trained with the patches split over the ranks (gradients summed) equals the one
    trained on one rank with all patches."""
    fam = sample_family(
        np.stack([dl.coefficients.random_coefficient(16, 0.01, 1.0, s) for s in (3, 4)])
    )
    settings = dict(architecture="cnn", width=8, depth=3, constraint="projection", epochs=3)
    states = []
    for c in (comm, MPI.COMM_SELF):
        g = dl.create_nested_grids(c, 4, 16)
        basis = dl.MultiscaleBasis(g, 1)
        batch = export_patches(basis, fam.a, fam.training_parameters(2), with_correctors=False)
        trainer = DeepRitzTrainer(batch, torch.zeros(2, 1), TrainingSettings(**settings), c)
        trainer.train()
        states.append(trainer.nets.state_dict())
        basis.destroy()
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], rtol=1e-4, atol=1e-6)

"""The coefficient-aware network in 3D (hexahedral patches, Conv3d): the window's cells,
vertices, coordinates and element loads against the patches' own geometry and coarse basis
functions, the exact minimizer over its outputs, and ``train`` -> ``elliptic --model`` through
the command line."""

import json

import numpy as np
import pytest
import torch
from helpers import cli_main
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.grids import UNIT_CUBE, box_points, corner_bits, lattice_coordinates
from dolfinx_lod.neural import LearnedCorrectors, TrainedModel, export_patches
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.neural.losses import energy_terms
from dolfinx_lod.neural.networks import build_networks
from dolfinx_lod.neural.presets import PRESETS
from dolfinx_lod.samples import sample_family


@pytest.fixture(scope="module")
def tiny3():
    """H = 1/3, h = 1/6 (r = 2), l = 1 on the unit cube, the left side Neumann; two
    log-normal fields."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 3, 6, UNIT_CUBE, neumann="left")
    basis = dl.MultiscaleBasis(g, 1)
    fields = np.exp(np.random.default_rng(3).normal(0.0, 1.0, (2, 6, 6, 6)))
    family = sample_family(fields, domain=g.domain)
    batch = export_patches(basis, family.a, family.training_parameters(2), dtype=torch.float64)
    yield g, basis, batch
    basis.destroy()


def test_3d_window_matches_the_patch_geometry(tiny3):
    """Per patch: the coordinate channels at the window cells of the patch's cells are the
    cells' centres (from their global keys) relative to T; the window vertices of T's corners
    are where the exported coarse basis functions Lambda_j are 1; with a constant a the load
    channels on T are H grad Lambda_j (differences of the exported Lambda_j over each fine
    cell) and zero elsewhere; the mask is -1 on the window cells beyond the Neumann side x = 0."""
    g, basis, batch = tiny3
    nets = CoefficientNetworks(1, batch.Pi.float(), 4, 2, loads="mean").double()
    d, r, W, h, H = 3, g.r, nets.cells, g.h[0], g.H[0]
    cells, groups = nets.geometry(batch.configs)
    ones = torch.ones_like(batch.a[:, :1])
    x = nets.inputs(batch.configs, ones).reshape(len(batch.configs), -1, W**d)
    verts = {int(i): v for index, v, _ in groups for i in index}
    for gi, patch in enumerate(basis.patches):
        keys = patch.fine_cell_keys(g)
        centres = (lattice_coordinates(keys, g.fine_sizes, d) + 0.5) * h
        T = lattice_coordinates(np.array([patch.cell]), g.coarse_sizes, d)[0]
        c = cells[gi, : keys.size]
        xyz = x[gi, 2 : 2 + d][:, c].T.numpy() * W * h / 2 + (T + 0.5) * H
        assert np.abs(xyz - centres).max() < 1e-12
        n = int(batch.num_vertices[gi])
        hats = batch.hats[gi, :n].numpy()
        for j, bits in enumerate(corner_bits(d)):
            corner = (r + bits * r) @ (W + 1) ** np.arange(d)
            assert verts[gi][np.argmax(hats[:, j])] == corner
        # H grad Lambda_j at the centre of every patch cell: mean of the edge differences
        nv = np.asarray(patch.configuration.shape) * r + 1
        lam = hats.reshape(*nv[::-1], 2**d)  # (z, y, x, j)
        for k in range(d):
            diff = np.diff(lam, axis=2 - k) * H / h
            for other in {0, 1, 2} - {2 - k}:
                diff = 0.5 * (diff[(slice(None),) * other + (slice(1, None),)]
                              + diff[(slice(None),) * other + (slice(None, -1),)])  # fmt: skip
            grad = diff.reshape(-1, 2**d)  # (patch cells, j)
            pos = box_points(nv - 1) - np.asarray(patch.configuration.element) * r
            inside = ((pos >= 0) & (pos < r)).all(1)  # the cells of T
            loads = x[gi, 2 + d + k :: d][:, c].T.numpy()  # channels d j + k
            assert np.abs(loads[inside] - grad[inside]).max() < 1e-12
            assert np.abs(loads[~inside]).max() == 0.0
        config = patch.configuration  # the window's columns left of a patch cut by x = 0
        columns = (1 - config.element[0]) * r if config.neumann_sides()[0, 0] else 0
        assert int((x[gi, 1] < 0).sum()) == columns * W**2


def test_3d_outputs_hold_the_classical_corrector_exactly(tiny3):
    """The outputs alpha (G, K, N, 8) lie in ker B, and the minimizer of the Deep Ritz energy
    over the network's alpha = Q y (its linear map from the vertex values) is the classical
    corrector of every patch, Neumann side included."""
    g, basis, batch = tiny3
    nets = CoefficientNetworks(1, batch.Pi.float(), 4, 2).double()
    with torch.no_grad():
        alpha = nets(batch.configs, batch.a)
    G, K, N = batch.shape
    assert alpha.shape == (G, K, N, 8)
    neumann = 0
    for index, verts, maps in nets.geometry(batch.configs)[1]:
        Q = maps(torch.eye(verts.numel(), dtype=torch.float64), True).T
        gi = int(index[0])
        n = int(batch.num_vertices[gi])
        B = torch.tensor(
            dl.interpolation.patch_constraints(batch.configs[gi], g.r, basis.Pi),
            dtype=torch.float64,
        )
        assert (B @ Q).abs().max() < 1e-10
        assert (B @ alpha[gi, 0, :n]).abs().max() < 1e-10
        S = batch.stiffness(gi).to_dense()[0]
        F, C = batch.F[gi, 0, :n], batch.C[gi, 0, :n]
        y = torch.linalg.lstsq(Q.T @ S @ Q, Q.T @ F, driver="gelsd").solution
        e = Q @ y - C
        assert torch.sqrt((e * (S @ e)).sum()) <= 1e-7 * torch.sqrt((C * (S @ C)).sum())
        neumann += bool(batch.configs[gi].neumann_sides().any())
    assert neumann > 0


@pytest.mark.mpi
def test_train_in_3d_then_elliptic_model(tmp_dir, capsys, comm):
    """train on (K, n_z, n_y, n_x) stacks in 3D: summary.json judges by the solution; the
    model serves elliptic --model on a 3D coefficient as in the library and the time loop
    (parabolic --model); --augment is refused in 3D (exit 2, naming the option)."""
    if comm.rank == 0:
        rng = np.random.default_rng(5)
        np.save(tmp_dir / "train.npy", np.exp(rng.normal(0.0, 1.0, (2, 6, 6, 6))))
        np.save(tmp_dir / "test.npy", np.exp(rng.normal(0.0, 1.0, (1, 6, 6, 6))))
        np.save(tmp_dir / "A.npy", np.exp(rng.normal(0.0, 1.0, (6, 6, 6))))
    comm.Barrier()
    grid = ["--coarse", 3, "--fine", 6, "--layers", 1]
    train = ["train", "--coefficients", tmp_dir / "train.npy", "--test-coefficients"]
    train += [tmp_dir / "test.npy", *grid, "--network", "cnn:4x2", "--epochs", 2]
    assert cli_main([*train, "--out", tmp_dir / "m"], capsys)[0] == 0
    summary = json.loads((tmp_dir / "m" / "summary.json").read_text())
    assert (summary["n"], summary["NH"], len(summary["domain"][0])) == (6, 3, 3)
    error = summary["solution_error_test"]["energy"]["mean"]
    assert np.isfinite(error) and error > 0
    model = tmp_dir / "m" / "model.pt"
    solve = ["elliptic", "--coefficient", tmp_dir / "A.npy", "--no-plot", "--model", model]
    assert cli_main([*solve, *grid, "--out", tmp_dir / "e"], capsys)[0] == 0
    g = dl.create_nested_grids(comm, 3, 6, UNIT_CUBE)
    learned = LearnedCorrectors(TrainedModel.load(model, g, 1), None, g.r)
    sol = dl.solve_elliptic(g, np.load(tmp_dir / "A.npy"), 1, provider=learned)
    u = dl.io.gather_vertex_array(g, sol.u_ms)
    if comm.rank == 0:
        u_cli = np.load(tmp_dir / "e" / "solution.npy")
        assert np.abs(u_cli - u).max() <= 1e-10 * np.abs(u).max()
    loop = ["parabolic", "--coefficients", tmp_dir / "train.npy", "--T", 0.1, "--steps", 2]
    loop += ["--model", model, "--no-plot", "--coarse", 3, "--layers", 1, "--out", tmp_dir / "p"]
    assert cli_main(loop, capsys)[0] == 0
    summary = json.loads((tmp_dir / "p" / "summary.json").read_text())
    assert (summary["dim"], summary["basis"]) == (3, "learned")
    code, err = cli_main([*train, "--augment", "--out", tmp_dir / "x"], capsys)
    assert code == 2 and (comm.rank or "--augment: the symmetry augmentation" in err), err


def test_3d_network_starts_at_zero_correctors(tiny3):
    """The 3D network built for training without the Ritz output starts at alpha = 0 (Deep
    Ritz energy 0): a random 3D output's energy over the (W+1)^3 window vertices would dwarf
    the correctors'. With it (the default) the start is the minimiser in a random span: every
    patch's energy is <= 0."""
    _, _, batch = tiny3
    settings = PRESETS["cnn"].settings("cnn:4x2", ritz=0)
    nets, _ = build_networks(batch, 0, settings, MPI.COMM_SELF)
    with torch.no_grad():
        alpha = nets.double()(batch.configs, batch.a)
    assert alpha.abs().max() == 0.0
    assert nets.first.weight.abs().max() > 0
    nets, _ = build_networks(batch, 0, PRESETS["cnn"].settings("cnn:4x2"), MPI.COMM_SELF)
    with torch.no_grad():
        alpha = nets.double()(batch.configs, batch.a)
    energy = energy_terms(batch, alpha)
    assert alpha.abs().max() > 0 and energy.max() <= 1e-12 and energy.min() < 0


def test_3d_ritz_steps_checkpointed_in_training(tiny3, monkeypatch):
    """In 3D training the Ritz steps run under gradient checkpointing (memory: one
    configuration's intermediates at a time): the same loss and gradients as without it."""
    _, _, batch = tiny3
    settings = PRESETS["cnn"].settings("cnn:4x2", ritz_steps=2)
    nets, _ = build_networks(batch, 0, settings, MPI.COMM_SELF)
    nets = nets.double().train()

    def loss_and_gradients():
        nets.zero_grad()
        loss = energy_terms(batch, nets(batch.configs, batch.a)).sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in nets.parameters() if p.grad is not None]

    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(
        torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k)
    )
    loss, grads = loss_and_gradients()
    assert calls and grads
    monkeypatch.setattr(CoefficientNetworks, "_ritz_stage", CoefficientNetworks._ritz)
    plain_loss, plain_grads = loss_and_gradients()
    assert torch.allclose(loss, plain_loss, rtol=1e-12)
    for g, p in zip(grads, plain_grads, strict=True):
        assert torch.allclose(g, p, rtol=1e-9, atol=1e-12)

"""LOD-ANN: export, Deep Ritz loss, training, persistence, provider, command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import SMOOTH
from petsc4py import PETSc

import dolfinx_lod as dl
from dolfinx_lod.neural import (
    DeepRitzTrainer,
    LearnedCorrectors,
    TrainedModel,
    TrainingDiverged,
    TrainingSettings,
    export_patches,
)
from dolfinx_lod.neural.losses import adaptive_penalty, deep_ritz_energy, penalty_terms
from dolfinx_lod.neural.presets import PRESETS, preset
from dolfinx_lod.neural.provider import compare_providers, problem_metadata, scale_parameters

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def tiny(comm):
    """H = 1/4, h = 1/16, l = 1, four training parameters of a smooth family."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(comm, 4, 16)
    basis = dl.MultiscaleBasis(g, 1)
    train = SMOOTH.training_parameters(4)
    batch = export_patches(basis, SMOOTH.a, train)
    return g, basis, train, batch


def test_export_matches_the_classical_matrices(tiny):
    """The exported S, F reproduce the classical correctors' saddle-point equations: C is a
    stationary point of the energy on ker B (S C - F = B^T mu) with B C = 0."""
    g, basis, train, batch = tiny
    S64 = batch.S.double()
    for gi in range(len(batch.cells)):
        n = int(batch.num_vertices[gi])
        S = batch.stiffness(gi).to_dense().double()  # (K, n, n) from torch sparse CSR
        C = batch.C[gi, :, :n].double()
        F = batch.F[gi, :, :n].double()
        B = torch.tensor(
            dl.interpolation.patch_constraints(batch.configs[gi], g.r, basis.Pi),
            dtype=torch.float64,
        )
        assert (B @ C).abs().max() < 1e-6
        residual = S @ C - F  # must lie in range(B^T)
        mu = torch.linalg.lstsq(B.T.expand(C.shape[0], -1, -1), residual).solution
        assert (residual - B.T @ mu).abs().max() < 1e-4 * residual.abs().max()
        assert torch.allclose(S, S.transpose(1, 2))
    assert S64.abs().max() > 0.1


def test_energy_equals_quadratic_form_and_is_stationary_at_the_corrector(tiny):
    g, basis, train, batch = tiny
    b = batch.select(slice(0, 2))
    b64 = type(b)(**{k: getattr(b, k) for k in b.__dataclass_fields__})
    for k in ("coords", "hats", "S", "F", "C"):
        setattr(b64, k, getattr(b, k).double())
    b64.B = b.B.double()
    alpha = torch.randn(b64.C.shape, dtype=torch.float64) * (
        b64.coords.abs().sum(-1, keepdim=True)[:, None] > 0
    )
    # Independently: dense quadratic form from the torch sparse CSR export.
    expected = 0.0
    for gi in range(len(b64.cells)):
        n = int(b64.num_vertices[gi])
        S = b64.stiffness(gi).to_dense()
        a, F = alpha[gi, :, :n], b64.F[gi, :, :n]
        expected += (0.5 * (a * (S @ a)).sum() - (F * a).sum()).item() / a.shape[0]
    assert deep_ritz_energy(b64, alpha).item() == pytest.approx(expected, rel=1e-12)
    # At the classical corrector: the energy gradient vanishes on ker B, the penalty is zero.
    C = b64.C.clone().requires_grad_(True)
    deep_ritz_energy(b64, C).backward()
    grad = C.grad
    B, Bt = b64.constraint_csr
    layout = b64.constraint_layout(grad)
    projected = layout - Bt @ torch.linalg.lstsq((B @ Bt).to_dense(), B @ layout).solution
    assert projected.abs().max() < 1e-6 * grad.abs().max()
    mu = torch.rand(B.shape[0], layout.shape[1], dtype=torch.float64)
    assert adaptive_penalty(b64, b64.C, mu).item() < 1e-12


def test_penalty_is_the_papers_16(tiny):
    """Per network (T, j) the penalty is ||mu (.) I_H^l alpha||^2 / (N_s N_H^l) (paper (16)),
    divided by N_s like the energy: checked against a dense I_H^l per patch (N_H^l its rows),
    with the gradients in alpha and mu (mu squared: d/dmu = 2 mu (I_H alpha)^2 / ...)."""
    g, basis, train, batch = tiny
    b = batch.select(slice(0, 3))
    G, K, N, c = b.F.shape
    m = b.B.shape[0] // G
    torch.manual_seed(3)
    alpha = torch.randn(G, K, N, c, requires_grad=True)
    mu = torch.rand(G * m, K * c, requires_grad=True)
    terms = penalty_terms(b, alpha, mu)
    (terms * torch.arange(1.0, c + 1)).sum().backward()  # distinct weights per corner j
    mu4 = mu.detach().reshape(G, m, K, c)
    for gi in range(G):
        n = int(b.num_vertices[gi])
        I_H = torch.tensor(
            dl.interpolation.patch_constraints(b.configs[gi], g.r, basis.Pi), dtype=torch.float32
        )
        N_H = I_H.shape[0]
        a = alpha.detach()[gi, :, :n]  # (K, n, c)
        Ia = torch.einsum("mn,knc->mkc", I_H, a)
        w = mu4[gi, :N_H]
        expected = ((w * Ia) ** 2).sum(dim=(0, 1)) / (K * N_H) / K
        assert torch.allclose(terms[gi].detach(), expected, rtol=1e-5)
        j = torch.arange(1.0, c + 1)
        grad_mu = 2 * w * Ia**2 / (K * N_H) / K * j
        assert torch.allclose(mu.grad.reshape(G, m, K, c)[gi, :N_H], grad_mu, rtol=1e-4)
        grad_a = 2 * torch.einsum("mn,mkc->knc", I_H, w**2 * Ia) / (K * N_H) / K * j
        assert torch.allclose(alpha.grad[gi, :, :n], grad_a, rtol=1e-4, atol=1e-7)
    assert adaptive_penalty(b, alpha, mu).item() == pytest.approx(terms.sum().item(), rel=1e-6)


def train_tiny(tiny, tmp_path=None, epochs=1500, **kwargs):
    g, basis, train, batch = tiny
    settings = TrainingSettings(
        architecture="reduced",
        modes=16,
        width=16,
        depth=2,
        epochs=epochs,
        lr=1e-2,
        checkpoint_every=250,
        **kwargs,
    )
    trainer = DeepRitzTrainer(batch, scale_parameters(SMOOTH, train), settings, g.comm)
    trainer.train(checkpoint=tmp_path)
    return trainer


def tiny_model(g, batch, nets) -> TrainedModel:
    """The networks of :func:`train_tiny` gathered into a model (collective)."""
    meta = {**problem_metadata(g, 1, SMOOTH), "num_params": 1, "architecture": "reduced"}
    return TrainedModel.gather(g.comm, batch, nets, {**meta, "width": 16, "depth": 2})


def zero_provider(batch) -> dl.neural.FixedCorrectors:
    """No corrector on the exported patches."""
    sizes = zip(batch.cells, batch.num_vertices, strict=True)
    return dl.neural.FixedCorrectors({c: np.zeros((int(n), 4)) for c, n in sizes})


def test_tiny_problem_trains_below_ten_percent_on_held_out_parameter(tiny):
    g, basis, train, batch = tiny
    trainer = train_tiny(tiny)
    test = np.array([[0.4]])
    held_out = export_patches(basis, SMOOTH.a, test)
    with torch.no_grad():
        alpha = trainer.nets(held_out.coords, scale_parameters(SMOOTH, test)).double()
    C = held_out.C.double()
    S = lambda x: held_out.apply_stiffness(x.float()).double()  # noqa: E731
    num = g.comm.allreduce(((alpha - C) * S(alpha - C)).sum().item())
    den = g.comm.allreduce((C * S(C)).sum().item())
    error = np.sqrt(num / den)
    assert error < 0.10, error
    # Through the provider and the global basis, also better than no corrector.
    model = tiny_model(g, batch, trainer.nets)
    learned = LearnedCorrectors(model, SMOOTH, g.r)
    zero = zero_provider(batch)
    errors = compare_providers(g, 1, SMOOTH, test, {"learned": learned, "none": zero})
    assert errors["learned"]["energy"] < 0.3 * errors["none"]["energy"]


def test_paper_architecture_trains(tiny):
    """The paper's MLP (Def. 3.1 + 3.3): the min-max loss decreases and outputs vanish on the
    patch boundary."""
    g, basis, train, batch = tiny
    settings = TrainingSettings(architecture="mlp", width=16, depth=3, epochs=200, lr=1e-3)
    trainer = DeepRitzTrainer(batch, scale_parameters(SMOOTH, train), settings, g.comm)
    trainer.train()
    h = trainer.history
    assert h.energy[-1] + h.penalty[-1] < h.energy[0] + h.penalty[0]
    with torch.no_grad():
        alpha = trainer.outputs()
    x = batch.coords
    boundary = (x[..., 0] == 0) | (x[..., 0] == 1) | (x[..., 1] == 0) | (x[..., 1] == 1)
    assert alpha[boundary[:, None].expand(-1, alpha.shape[1], -1)].abs().max() == 0


def test_save_load_resume_and_mismatch(tiny, tmp_dir):
    g, basis, train, batch = tiny
    first = train_tiny(tiny, tmp_dir, epochs=300, patience=10**6)
    assert first.epoch == 300
    model = tiny_model(g, batch, first.nets)
    if g.comm.rank == 0:
        model.save(tmp_dir / "model.pt")
    g.comm.Barrier()
    loaded = TrainedModel.load(tmp_dir / "model.pt", g, 1, SMOOTH)
    p = scale_parameters(SMOOTH, [[0.3]])
    with torch.no_grad():
        assert torch.equal(model.nets(batch.coords, p), loaded.nets(batch.coords, p))
    with pytest.raises(ValueError, match="model does not match the problem: l is 1"):
        TrainedModel.load(tmp_dir / "model.pt", g, 2, SMOOTH)
    other = dl.create_nested_grids(g.comm, 2, 16)
    with pytest.raises(ValueError, match="NH is 4 in the model but 2 here"):
        TrainedModel.load(tmp_dir / "model.pt", other, 1, SMOOTH)
    # Resume continues the loss curve where the checkpoint stopped.
    settings = TrainingSettings(
        architecture="reduced", modes=16, width=16, depth=2, epochs=400, lr=1e-2, patience=10**6
    )
    resumed = DeepRitzTrainer(batch, scale_parameters(SMOOTH, train), settings, g.comm)
    assert resumed.load_checkpoint(tmp_dir)
    assert resumed.epoch == 300 and resumed.history.energy == first.history.energy
    resumed.train(checkpoint=tmp_dir)
    assert resumed.epoch == 400 and len(resumed.history.energy) == 400
    assert resumed.history.energy[:300] == first.history.energy
    # A checkpoint from another network shape is refused.
    wrong = DeepRitzTrainer(
        batch,
        scale_parameters(SMOOTH, train),
        TrainingSettings(architecture="reduced", width=8, depth=3),
        g.comm,
    )
    with pytest.raises(ValueError, match="width"):
        wrong.load_checkpoint(tmp_dir)


def test_divergence_is_detected_and_last_checkpoint_kept(tiny, tmp_dir):
    g, basis, train, batch = tiny
    trainer = train_tiny(tiny, tmp_dir, epochs=250, patience=10**6)
    before = (tmp_dir / f"checkpoint-rank{g.comm.rank}-of{g.comm.size}.pt").read_bytes()
    with torch.no_grad():
        trainer.nets.weights[0].fill_(float("nan"))
    trainer.settings.epochs = 600
    with pytest.raises(TrainingDiverged, match="diverged at epoch 250"):
        trainer.train(checkpoint=tmp_dir)
    after = (tmp_dir / f"checkpoint-rank{g.comm.rank}-of{g.comm.size}.pt").read_bytes()
    assert before == after


def test_bad_settings():
    with pytest.raises(ValueError, match="architecture must be"):
        TrainingSettings(architecture="unet").validate()
    with pytest.raises(ValueError, match="constraint 'projection' needs architecture 'cnn'"):
        TrainingSettings(architecture="mlp", constraint="projection").validate()
    with pytest.raises(ValueError, match="needs constraint 'projection'"):
        TrainingSettings(architecture="cnn", batch_size=2).validate()
    with pytest.raises(ValueError, match="width must be >= 1"):
        TrainingSettings(width=0).validate()
    from dolfinx_lod.neural.networks import parse_network

    assert parse_network("mlp:128x8") == {"architecture": "mlp", "width": 128, "depth": 8}
    assert parse_network("cnn:32x6") == {"architecture": "cnn", "width": 32, "depth": 6}
    with pytest.raises(ValueError, match="`network` must be"):
        parse_network("mlp:128")


@pytest.mark.slow
def test_train_command(tmp_path):
    """`dolfinx-lod train` under mpirun -n 2 writes model.pt and summary.json with the keys
    users rely on; a model for another problem is refused."""
    from test_rank_invariance import mpirun

    out = tmp_path / "out"
    cmd = [
        mpirun(),
        "-n",
        "2",
        sys.executable,
        "-m",
        "dolfinx_lod.cli",
        "train",
        "--family",
        "cont",
        "--coarse",
        "4",
        "--fine",
        "16",
        "--layers",
        "1",
        "--samples",
        "6",
        "--test-samples",
        "3",
        "--epochs",
        "300",
        "--network",
        "reduced:16:32x3",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "basis_error_train",
        "basis_error_test",
        "basis_error_test_nodal",
        "train_seconds",
        "epochs",
        "loss_history",
        "baseline_errors_test",
    ):
        assert key in summary
    assert set(summary["baseline_errors_test"]) == {"none", "mean", "nearest"}
    assert summary["epochs"] <= 300 and len(summary["loss_history"]["energy"]) == summary["epochs"]
    assert summary["basis_error_test"] < summary["baseline_errors_test"]["none"]["energy"]
    assert (out / "model.pt").exists() and (out / "loss.png").stat().st_size > 1000
    g = dl.create_nested_grids(__import__("mpi4py").MPI.COMM_SELF, 4, 16)
    fam = dl.coefficients.family("cont", 16)
    model = TrainedModel.load(out / "model.pt", g, 1, fam)
    assert model.metadata["architecture"] == "reduced"
    with pytest.raises(ValueError, match="family is 'cont' in the model but 'battery' here"):
        TrainedModel.load(out / "model.pt", g, 1, dl.coefficients.family("battery", 16))


@pytest.mark.mpi
def test_parametric_provider_skips_the_coefficient_and_recomputes_only_when_p_changes(tiny):
    g, basis, train, batch = tiny
    zero = zero_provider(batch)

    def never(x, p):
        raise AssertionError("a parametric provider must not evaluate the coefficient")

    b = dl.MultiscaleBasis(g, 1, provider=zero)
    counts = []
    for p in ([0.2], [0.2], [0.3]):
        B = b.update(never, p)
        counts.append(b.num_recomputed)
    b.invalidate()
    b.update(never, [0.3])
    counts.append(b.num_recomputed)
    assert counts == [16, 0, 16, 16]
    D = B.copy()  # no corrector: B = P
    D.axpy(-1.0, b.P, structure=PETSc.Mat.Structure.DIFFERENT_NONZERO_PATTERN)
    assert D.norm() == 0.0
    D.destroy()
    b.destroy()


def test_reduced_training_loss_equals_the_full_space_loss(tiny):
    """The reduced networks train on 1/2 c^T V^T S V c - (V^T F)^T c and mu (B V c)^2: the same
    values as the Deep Ritz energy (14) and penalty (16) of alpha = V c on the fine patch."""
    trainer = train_tiny(tiny, epochs=30)
    with torch.no_grad():
        trainer.mu.add_(1.0)
        energy, penalty = trainer.loss_parts()
        alpha = trainer.outputs()
        full_energy = deep_ritz_energy(trainer.batch, alpha)
        full_penalty = adaptive_penalty(trainer.batch, alpha, trainer.mu)
    assert abs(energy - full_energy) <= 1e-4 * abs(full_energy)
    assert abs(penalty - full_penalty) <= 1e-6 * abs(full_energy)


def test_train_returns_the_workflow_model(tiny):
    """``neural.train`` (preset "tiny", 30 epochs) returns the networks that the workflow's
    steps give on their own (prepare_training, train, gather_model), with the run's metadata."""
    from dolfinx_lod.neural import train
    from dolfinx_lod.neural.workflow import prepare_training, trained_model

    g = tiny[0]
    model = train(g, 1, SMOOTH, 4, preset_name="tiny", epochs=30)
    settings = PRESETS["tiny"].settings(epochs=30)
    run = prepare_training(g, 1, SMOOTH, 4, settings)
    run.trainer.train()
    reference = trained_model(run, g, 1, SMOOTH, 4)
    run.basis.destroy()
    assert model.metadata["architecture"] == "reduced" and model.metadata["epochs"] == 30
    state, expected = model.nets.state_dict(), reference.nets.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    with pytest.raises(ValueError, match="either settings or network"):
        train(g, 1, SMOOTH, 4, settings, epochs=5)


def test_presets():
    """Named presets: a p-conditioned network takes the preset's p budget, the projection
    its batch size; settings given on top win."""
    cnn = PRESETS["cnn"].settings()
    assert (cnn.architecture, cnn.width, cnn.depth, cnn.ritz, cnn.ritz_steps) == (
        "cnn",
        16,
        4,
        8,
        4,
    )
    assert cnn.ritz_tol == 1e-3
    assert (cnn.constraint, cnn.batch_size, cnn.epochs, cnn.lr_step) == ("projection", 2, 12, 8)
    mlp = PRESETS["cnn"].settings("mlp:8x2")
    assert (mlp.constraint, mlp.batch_size, mlp.epochs, mlp.lr_decay) == ("penalty", 0, 5000, 0.9)
    assert mlp.ritz == mlp.ritz_steps == 0
    penalty = PRESETS["cnn"].settings(constraint="penalty")
    assert penalty.batch_size == 0 and penalty.ritz == penalty.ritz_steps == 0
    assert PRESETS["cnn"].settings(ritz=0).ritz_steps == 0  # ritz=0 alone turns it off
    assert PRESETS["cnn"].settings(ritz=0).ritz_tol == 0.0
    with pytest.raises(ValueError, match="ritz tol must be in"):
        PRESETS["cnn"].settings(ritz_tol=1.5).validate()
    quick = PRESETS["quick"].settings()
    assert (quick.width, quick.depth, quick.ritz) == (24, 6, 0)
    assert PRESETS["quick"].settings("reduced:4:8x2").epochs == 3000
    # train's CNN: load inputs scaled by their patch maximum, no augmentation; the demos' CNN
    # keeps the measured exp(m_T) scaling
    assert (cnn.loads, cnn.augment, PRESETS["quick"].settings().loads) == ("max", False, "mean")
    paper = PRESETS["paper"].settings()
    assert paper.compile and (paper.width, paper.depth, paper.lr) == (128, 8, 1e-3)
    assert not PRESETS["paper"].settings("cnn:8x3").compile
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("huge")

"""The Ritz output of the coefficient-aware CNN (neural/ritz.py): its cell-local energy equals
the assembled patch system's, the combination is the energy minimiser in the span, and a span
that holds the classical corrector gives it back; on a rectangle with anisotropic cells and a
Neumann side, and in 3D."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.grids import UNIT_CUBE
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.neural.export import export_patches
from dolfinx_lod.neural.losses import energy_terms
from dolfinx_lod.neural.networks import NETWORKS
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.ritz import RitzMaps, element_stiffness
from dolfinx_lod.samples import sample_family

CASES = {  # coarse, fine, domain, neumann: h = (1/8, 1/12) in 2D
    "rectangle": ((3, 3), (12, 12), ((0.0, 0.0), (1.5, 1.0)), "left"),
    "cube": (3, 6, UNIT_CUBE, "left"),
}


@pytest.fixture(scope="module", params=list(CASES))
def exported(request):
    """Two log-normal fields (variance 1.5) exported in float64 with the classical
    correctors, and the grids and basis."""
    torch.set_num_threads(1)
    coarse, fine, domain, neumann = CASES[request.param]
    g = dl.create_nested_grids(MPI.COMM_SELF, coarse, fine, domain, neumann=neumann)
    basis = dl.MultiscaleBasis(g, 1)
    shape = tuple(int(n) for n in g.fine_sizes[::-1])
    fields = np.exp(np.random.default_rng(7).normal(0.0, 1.5, (2, *shape)))
    family = sample_family(fields, domain=g.domain)
    batch = export_patches(basis, family.a, family.training_parameters(2), dtype=torch.float64)
    yield g, basis, batch
    basis.destroy()


def test_element_stiffness_of_the_unit_square():
    """K_e of the unit square: the Q1 stiffness (2/3 on the diagonal, -1/6 / -1/3 off it)."""
    K = element_stiffness([1.0, 1.0])
    expected = np.array([[4, -1, -1, -2], [-1, 4, -2, -1], [-1, -2, 4, -1], [-2, -1, -1, 4]]) / 6
    np.testing.assert_allclose(K, expected, atol=1e-15)
    np.testing.assert_allclose(element_stiffness([2.0, 1.0, 0.5]).sum(axis=1), 0.0, atol=1e-14)


def test_ritz_combination_is_the_minimiser_in_the_span(exported):
    """The cell-local S W, F and diag S equal the assembled ones (off the Dirichlet boundary).
    For m = 2^d + 3 vectors in ker B holding the classical correctors: the combination
    equals the minimiser computed with the assembled S and F, it satisfies
    W^T (S alpha - F) = 0, and it is the classical corrector on every patch (to 1e-8 in the
    energy norm: the C_j are dependent)."""
    g, basis, batch = exported
    rng = np.random.default_rng(0)
    G, K, N = batch.shape
    for gi in range(G):
        config, n = batch.configs[gi], int(batch.num_vertices[gi])
        B = torch.tensor(patch_constraints(config, g.r, basis.Pi))
        S = batch.stiffness(gi).to_dense()  # (K, n, n)
        F, C = batch.F[gi, :, :n], batch.C[gi, :, :n]  # (K, n, 2^d)
        noise = torch.tensor(rng.normal(size=(K, 3, n)))
        noise = noise - (noise @ B.T) @ torch.linalg.pinv(B @ B.T) @ B  # into ker B
        noise[..., C[0].abs().sum(1) == 0] = 0.0  # zero where the correctors vanish
        W = torch.cat([C.transpose(1, 2), noise], dim=1)  # (K, m, n)
        maps = RitzMaps.build(config.shape, config.element, g.r, batch.cell)
        alpha = maps.combine(W, batch.a[gi, :, : maps.corners.shape[0]])  # (K, 2^d, n)
        inner = C[0].abs().sum(1) > 0  # not on the Dirichlet boundary
        a_cells = batch.a[gi, :, : maps.corners.shape[0]]
        SW = maps.apply(W, a_cells)
        torch.testing.assert_close(SW[..., inner], (W @ S)[..., inner], rtol=1e-10, atol=1e-10)
        loads = maps.loads(a_cells).transpose(1, 2)
        torch.testing.assert_close(loads[:, inner], F[:, inner], rtol=1e-10, atol=1e-12)
        diag = torch.diagonal(S, dim1=1, dim2=2)
        torch.testing.assert_close(maps.diagonal(a_cells)[:, inner], diag[:, inner])
        c = torch.linalg.solve(W @ S @ W.transpose(1, 2), W @ F)
        reference = c.transpose(1, 2) @ W
        assert (alpha - reference).abs().max() <= 1e-8 * reference.abs().max()
        residual = W @ (S @ alpha.transpose(1, 2) - F)
        assert residual.abs().max() < 1e-9 * F.abs().max()
        e = alpha.transpose(1, 2) - C
        energy = [torch.einsum("knj,knm,kmj->", v, S, v) for v in (e, C)]
        assert energy[0] <= 1e-16 * energy[1]


def test_ritz_network_outputs_lie_in_ker_b_and_do_not_see_a_scale(exported):
    """The network with a Ritz output: alpha (G, K, N, 2^d) in ker B; the same for 7 a; no
    Ritz output without the projection."""
    g, basis, batch = exported
    torch.manual_seed(0)
    nets = CoefficientNetworks(1, batch.Pi.float(), 4, 2, ritz=6, cell=batch.cell).double()
    with torch.no_grad():
        alpha = nets(batch.configs, batch.a)
        scaled = nets(batch.configs, 7 * batch.a)
    G, K, N = batch.shape
    assert alpha.shape == (G, K, N, 2**g.dim) and alpha.abs().max() > 0
    torch.testing.assert_close(alpha, scaled, rtol=1e-9, atol=1e-12)
    for gi in range(G):
        n = int(batch.num_vertices[gi])
        B = torch.tensor(patch_constraints(batch.configs[gi], g.r, basis.Pi))
        assert (B @ alpha[gi, 0, :n]).abs().max() < 1e-10
    with pytest.raises(ValueError, match="ritz output needs the projection"):
        nets(batch.configs, batch.a, project=False)


def test_ritz_model_survives_the_rebuild_and_needs_the_projection(exported):
    """A Ritz network rebuilt from a saved model's metadata (its cell sizes from the domain and
    the fine cells) gives the same correctors; ritz < 0 or without the projection is refused."""
    g, _, batch = exported
    torch.manual_seed(0)
    nets = CoefficientNetworks(1, batch.Pi.float(), 4, 2, ritz=5, cell=batch.cell)
    meta = {"l": 1, "width": 4, "depth": 2, "loads": "max", "ritz": 5, "n": list(g.fine_cells)}
    meta["domain"] = [list(map(float, c)) for c in g.domain]
    state = nets.state_dict()
    again = NETWORKS["cnn"].rebuild(meta, state, len(batch.cells))
    again.load_state_dict(state)
    assert again.cell == pytest.approx(batch.cell)
    a = batch.a.float()
    with torch.no_grad():
        torch.testing.assert_close(again(batch.configs, a), nets(batch.configs, a))
    for ritz, constraint in ((-1, "projection"), (4, "penalty")):
        bad = TrainingSettings(architecture="cnn", constraint=constraint, ritz=ritz)
        with pytest.raises(ValueError, match="ritz must be >= 0"):
            bad.validate()


@pytest.fixture(scope="module")
def binary_batch():
    """Patches of a binary field (1 and 1000) on the rectangle with a Neumann side, l = 1."""
    coarse, fine, domain, neumann = CASES["rectangle"]
    g = dl.create_nested_grids(MPI.COMM_SELF, coarse, fine, domain, neumann=neumann)
    basis = dl.MultiscaleBasis(g, 1)
    fields = np.where(np.random.default_rng(7).uniform(size=(2, 12, 12)) < 0.3, 1e3, 1.0)
    family = sample_family(fields, domain=g.domain)
    batch = export_patches(basis, family.a, family.training_parameters(2), dtype=torch.float64)
    basis.destroy()
    return batch


def _untrained_ritz(batch, steps: int, tol: float = 0.0, train: bool = False):
    """The correctors of an untrained Ritz network (seed 0, m = 4) in float64."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    nets = CoefficientNetworks(
        1, batch.Pi.float(), 4, 2, ritz=4, cell=batch.cell, ritz_steps=steps, ritz_tol=tol
    )
    with torch.no_grad():
        return nets.double().train(train)(batch.configs, batch.a)


def _constraint_residual(batch, alpha) -> float:
    """max |B alpha| over the correctors (B of the classical patch problems)."""
    G, K, N, J = alpha.shape
    return float(
        (alpha.permute(1, 3, 0, 2).reshape(K * J, G * N) @ batch.B.to_dense().T).abs().max()
    )


def test_ritz_steps_lower_the_energy_towards_the_corrector(binary_batch):
    """An untrained Ritz network on a binary field: each preconditioned residual step lowers
    the Deep Ritz energy, 8 steps bring the correctors within 15 % of the classical ones in the
    energy norm (0 steps: > 80 %), 32 steps within 1e-6 and still in ker B (the new vectors'
    rounding noise is projected onto ker B again after the Gram-Schmidt step: without that
    the energy drove them out of ker B, B alpha ~ 0.9, 13 % off the classical correctors)."""
    batch = binary_batch
    C = batch.C
    norm = lambda v: float((v * batch.apply_stiffness(v)).sum().sqrt())  # noqa: E731
    energies, errors = [], []
    for steps in (0, 1, 2, 8, 32):
        alpha = _untrained_ritz(batch, steps)
        energies.append(float(energy_terms(batch, alpha).sum()))
        errors.append(norm(alpha - C) / norm(C))
        assert _constraint_residual(batch, alpha) < 1e-12
    assert all(e1 < e0 for e0, e1 in zip(energies, energies[1:], strict=False))
    assert errors[0] > 0.8 and errors[-2] < 0.15 and errors[-1] < 1e-6


def test_ritz_tolerance_steps_on_out_of_training_only(binary_batch):
    """``ritz_tol``: out of training (eval) the steps go on past ``ritz_steps`` until a step
    lowers no corrector's energy by more than tol |E_j|; in training exactly ``ritz_steps``;
    a tolerance that step ``ritz_steps`` already meets stops right there."""
    batch = binary_batch
    norm = lambda v: float((v * batch.apply_stiffness(v)).sum().sqrt())  # noqa: E731
    two = _untrained_ritz(batch, 2)
    assert torch.equal(_untrained_ritz(batch, 2, tol=1e-8, train=True), two)
    eight = _untrained_ritz(batch, 8)
    assert torch.equal(_untrained_ritz(batch, 2, tol=0.99), two)  # step 2 lowered < 99 %
    online = _untrained_ritz(batch, 2, tol=1e-8)
    assert norm(online - batch.C) < 1e-4 * norm(batch.C) < norm(eight - batch.C)
    with pytest.raises(ValueError, match="ritz tol"):
        CoefficientNetworks(1, batch.Pi.float(), 4, 2, ritz=0, ritz_tol=0.1)

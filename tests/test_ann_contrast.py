"""Options of the coefficient-aware CNN for high-contrast fields (neural/cnn.py, losses.py):
the contrast input channels, the window-mean (pooled) features, the a-scaled output map and
the per-field energy weights, checked against quantities computed independently here."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.interpolation import patch_constraints
from dolfinx_lod.neural.cnn import CHANNELS, CoefficientNetworks
from dolfinx_lod.neural.export import export_patches
from dolfinx_lod.neural.losses import energy_weights, field_energy_weights
from dolfinx_lod.neural.networks import NETWORKS
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.provider import LearnedCorrectors
from dolfinx_lod.neural.solutions import solution_errors, worse_than_classical
from dolfinx_lod.samples import sample_family


def binary_family():
    """One binary field on 24 x 24 cells: 1000 on about 30 % of the cells, 1 elsewhere."""
    return sample_family(
        np.where(np.random.default_rng(5).uniform(size=(1, 24, 24)) < 0.3, 1e3, 1.0)
    )


@pytest.fixture(scope="module")
def binary():
    """A binary field (1 and 1000) on 24 x 24 cells at (1/6, 1/24, 1), exported in float64
    with the classical correctors, and the basis (for the constraints)."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(MPI.COMM_SELF, 6, 24)
    basis = dl.MultiscaleBasis(g, 1)
    fam = binary_family()
    batch = export_patches(basis, fam.a, fam.training_parameters(1), dtype=torch.float64)
    yield g, basis, batch
    basis.destroy()


def test_contrast_channels_are_a_over_its_patch_extremes(binary):
    """contrast=True appends a / max a and min a / a on the patch cells (0 outside),
    unchanged when a is scaled; the other channels are those without the option, and the mask
    channel is 1 on every patch cell (also the window's first cell of a patch truncated on its
    upper sides only, once overwritten by the padding)."""
    _, _, batch = binary
    torch.manual_seed(0)
    plain = CoefficientNetworks(1, batch.Pi.float(), 8, 3).double()
    rich = CoefficientNetworks(1, batch.Pi.float(), 8, 3, contrast=True).double()
    x, x0 = rich.inputs(batch.configs, batch.a), plain.inputs(batch.configs, batch.a)
    assert x.shape[1] == CHANNELS + 2 and torch.equal(x[:, :CHANNELS], x0)
    cells, _ = rich.geometry(batch.configs)
    for g in range(len(batch.configs)):
        real = cells[g] >= 0
        a = batch.a[g, 0, : int(real.sum())]
        up, down = x[g, CHANNELS].ravel(), x[g, CHANNELS + 1].ravel()
        assert torch.all(x[g, 1].ravel()[cells[g][real]] == 1)  # no padding writes onto the patch
        torch.testing.assert_close(up[cells[g][real]], a / a.max())
        torch.testing.assert_close(down[cells[g][real]], a.min() / a)
        outside = torch.ones(up.numel(), dtype=torch.bool)
        outside[cells[g][real]] = False
        assert not up[outside].any() and not down[outside].any()
    torch.testing.assert_close(rich.inputs(batch.configs, 7.0 * batch.a), x)


def test_scaled_output_is_in_ker_b_and_is_the_laplacian_one_for_constant_a(binary):
    """output="scaled": B alpha = 0 to rounding, alpha = 0 on the patch boundary; for a
    constant a the vertex scales are 1 and alpha equals the "laplacian" output of the same
    weights, for the binary field it does not."""
    g, basis, batch = binary
    nets = {}
    for output in ("laplacian", "scaled"):
        torch.manual_seed(0)
        nets[output] = CoefficientNetworks(1, batch.Pi.float(), 8, 3, output=output).double()
    with torch.no_grad():
        alpha = nets["scaled"](batch.configs, batch.a)
        flat = [nets[k](batch.configs, torch.full_like(batch.a, 3.0)) for k in nets]
        other = nets["laplacian"](batch.configs, batch.a)
    torch.testing.assert_close(flat[0], flat[1])
    assert not torch.allclose(alpha, other, atol=1e-3 * other.abs().max())
    for gi, config in enumerate(batch.configs):
        n = int(batch.num_vertices[gi])
        B = torch.tensor(patch_constraints(config, g.r, basis.Pi))
        assert (B @ alpha[gi, :, :n]).abs().max() <= 1e-10 * alpha[gi].abs().max()
        wx, wy = config.shape
        grid = alpha[gi, 0, :n].reshape(wy * g.r + 1, wx * g.r + 1, 4)
        for edge in (grid[0], grid[-1], grid[:, 0], grid[:, -1]):
            assert edge.abs().max() == 0.0


def test_options_survive_the_model_rebuild(binary):
    """A network with the options, rebuilt from its metadata and state as a saved model is,
    gives the same correctors (the options are recorded, not reset to the defaults)."""
    _, _, batch = binary
    torch.manual_seed(0)
    options = {"contrast": True, "pool": True, "output": "scaled"}
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3, **options)
    meta = {"l": 1, "width": 8, "depth": 3, "loads": "max", **options}
    state = nets.state_dict()
    again = NETWORKS["cnn"].rebuild(meta, state, len(batch.cells))
    again.load_state_dict(state)
    a = batch.a.float()
    with torch.no_grad():
        torch.testing.assert_close(again(batch.configs, a), nets(batch.configs, a))
    for key in ("output", "energy_scale"):
        bad = TrainingSettings(architecture="cnn", constraint="projection", **{key: "x"})
        with pytest.raises(ValueError, match=f"{key.replace('_', ' ')} must be one of"):
            bad.validate()


def test_field_energy_weights_are_one_over_the_fields_mean(binary):
    """energy_scale="field": per field k the weight 1 / mean_T sum_j ||Lambda_j||^2_{a_k,T},
    the same for every patch (numpy from the exported energies), where the "patch" weights
    differ by the contrast."""
    _, _, batch = binary
    w = field_energy_weights(batch, MPI.COMM_SELF)
    energy = batch.energy.numpy()
    np.testing.assert_allclose(w.numpy(), np.broadcast_to(1 / energy.mean(0), energy.shape))
    patch = energy_weights(batch).numpy()
    assert patch.max() / patch.min() > 100


@pytest.mark.mpi
def test_field_energy_weights_do_not_depend_on_the_ranks(comm, binary):
    """The field mean is over the patches of all ranks: the weights on the split patches
    equal those of one rank."""
    _, _, whole = binary
    g = dl.create_nested_grids(comm, 6, 24)
    basis = dl.MultiscaleBasis(g, 1)
    fam = binary_family()
    mine = export_patches(basis, fam.a, fam.training_parameters(1), dtype=torch.float64)
    basis.destroy()
    w = field_energy_weights(mine, comm)
    torch.testing.assert_close(w[0], field_energy_weights(whole, MPI.COMM_SELF)[0])
    assert comm.allreduce(len(mine.cells)) == len(whole.cells)


class _Returns(torch.nn.Module):
    """A stand-in for a trained coefficient-aware network: returns fixed correctors (G, 1, N,
    4) for the patches in the basis' order, whatever a."""

    needs_coefficient = True

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = alpha

    def forward(self, configs, a, project=True):
        assert len(configs) == len(self.alpha)
        return self.alpha


def test_classical_correctors_through_the_learned_path_give_the_classical_lod(binary):
    """Sanity of the evaluation at contrast 1000: the classical correctors fed through the
    learned-corrector provider (LearnedCorrectors, its padding trim, solution_errors) give
    the classical LOD's error against the fine FEM exactly (ratio 1) and basis error 0; half
    of them does not."""
    g, _, batch = binary
    fam = binary_family()
    providers = {}
    for name, factor in (("exact", 1.0), ("half", 0.5)):
        model = type("Model", (), {})()
        model.metadata, model.needs_coefficient = {"constraint": "projection"}, True
        model.nets = _Returns(factor * batch.C[:, :1])
        providers[name] = LearnedCorrectors(model, None, g.r)
    errors = solution_errors(g, 1, fam, fam.training_parameters(1), providers)
    fine = errors["vs_fine"]
    for norm in ("energy", "l2"):
        assert fine["exact"][norm]["mean"] == pytest.approx(fine["classical"][norm]["mean"], 1e-9)
    assert errors["basis"]["exact"]["energy"] < 1e-10
    assert worse_than_classical(errors, "exact") == pytest.approx(1.0, 1e-9)
    assert worse_than_classical(errors, "half") > 1.1


def test_train_options_reach_the_settings(tmp_path):
    """`train`'s default weights the energy per field and has the Ritz output (--ritz 0 turns
    it off); --energy-scale, --contrast, --pool, --output, --ritz, --ritz-steps and --ritz-tol
    reach the training settings."""
    from dolfinx_lod.cli.app import build_parser
    from dolfinx_lod.cli.train import _settings

    base = ["train", "--family", "cont", "--samples", "2", "--fine", "16", "--coarse", "4"]
    base += ["--layers", "1", "--out", str(tmp_path / "run")]
    plain = _settings(build_parser().parse_args(base))
    assert plain.energy_scale == "field" and not plain.contrast and not plain.pool
    assert plain.output == "laplacian" and (plain.ritz, plain.ritz_steps) == (8, 4)
    off = _settings(build_parser().parse_args([*base, "--ritz", "0"]))
    assert (off.ritz, off.ritz_steps, off.ritz_tol) == (0, 0, 0.0)
    more = _settings(
        build_parser().parse_args([*base, "--ritz", "12", "--ritz-steps", "6", "--ritz-tol", "0"])
    )
    assert (more.ritz, more.ritz_steps, more.ritz_tol) == (12, 6, 0.0)
    extra = ["--energy-scale", "patch", "--contrast", "--pool", "--output", "scaled"]
    given = _settings(build_parser().parse_args([*base, *extra]))
    assert (given.energy_scale, given.contrast, given.pool, given.output) == (
        "patch",
        True,
        True,
        "scaled",
    )

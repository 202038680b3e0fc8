"""Accuracy measures of the coefficient-aware CNN on high-contrast fields: the square's
symmetries of the training patches (neural/augment.py) against independent patch solves on
the transformed fields, and the contrast-bounded load inputs (cnn.py, loads="max")."""

import numpy as np
import pytest
import torch
from helpers import cli_main
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.neural.augment import augment_symmetries, square_symmetries
from dolfinx_lod.neural.cnn import CoefficientNetworks
from dolfinx_lod.neural.export import export_patches
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.trainer import DeepRitzTrainer
from dolfinx_lod.samples import sample_family


def test_square_symmetries_form_the_group():
    """8 distinct permutations, identity first, closed under composition."""
    perms = square_symmetries(3)
    keys = {p.tobytes() for p in perms}
    assert len(keys) == 8 and np.array_equal(perms[0], np.arange(9))
    for p in perms:
        for q in perms:
            assert p[q].tobytes() in keys


@pytest.fixture(scope="module")
def exported():
    """One rough field on 24 x 24 cells, (H, h, l) = (1/6, 1/24, 1) (4 interior patches),
    and its 8 transforms: the exported patch data (with classical correctors) of each."""
    g = dl.create_nested_grids(MPI.COMM_SELF, 6, 24)
    basis = dl.MultiscaleBasis(g, 1)
    field = np.exp(np.random.default_rng(3).normal(0.0, 1.5, (24, 24)))
    batches = []
    for perm in square_symmetries(24):
        fam = sample_family(field.ravel()[perm].reshape(1, 24, 24))
        batches.append(export_patches(basis, fam.a, np.zeros((1, 1)), dtype=torch.float64))
    basis.destroy()
    return batches


def test_symmetric_copies_are_the_transformed_fields_patches(exported):
    """Each appended copy of an interior patch (symmetry s) equals, in a, the stiffness S, the
    element loads F and the classical correctors C, the patch of the field transformed by s
    whose coefficient it carries: the rotated field gives the rotated classical corrector."""
    batch = exported[0]
    aug = augment_symmetries(batch)
    G = len(batch.cells)
    interior = [g for g, c in enumerate(batch.configs) if not any(c.on_boundary)]
    assert len(interior) == 4 and len(aug.cells) == G + 7 * 4
    for i, copy in enumerate(range(G, len(aug.cells))):
        other = exported[1 + i % 7]
        match = [h for h in range(G) if torch.equal(other.a[h], aug.a[copy])]
        assert len(match) == 1
        h = match[0]
        n = int(other.num_vertices[h])
        for key in ("F", "C"):
            x, y = getattr(aug, key)[copy, :, :n], getattr(other, key)[h, :, :n]
            assert torch.allclose(x, y, atol=1e-10 * y.abs().max()), key
        assert torch.allclose(aug.stiffness(copy).to_dense(), other.stiffness(h).to_dense())
        assert torch.equal(aug.energy[copy], aug.energy[aug.cells.tolist().index(aug.cells[copy])])
    # the corrector of a patch is not that of its copy (the transform is not trivial)
    assert not torch.allclose(aug.C[G], batch.C[interior[0]])


def test_symmetric_copies_keep_the_constraint(exported):
    """B of each copy annihilates the copy's classical correctors (B C = 0 is preserved)."""
    aug = augment_symmetries(exported[0])
    G, K, N = aug.shape
    C = aug.C.permute(0, 2, 1, 3).reshape(G * N, -1)
    assert torch.sparse.mm(aug.B, C).abs().max() < 1e-10 * C.abs().max()


def test_max_scaled_loads_are_bounded_and_scale_invariant(exported):
    """loads="max": the element-load channels are those of loads="mean" divided by their
    largest magnitude per patch and sample (so at most 1 however large the contrast, where the
    "mean" ones reach about the contrast), and all inputs are unchanged when a is scaled."""
    batch = exported[0]
    cells = batch.a.shape[2]
    a = torch.where(
        torch.rand(len(batch.cells), 1, cells, generator=torch.Generator().manual_seed(1)) < 0.3,
        1e3,
        1.0,
    ).double()
    nets = {
        k: CoefficientNetworks(1, batch.Pi.float(), 8, 3, loads=k).double() for k in ("max", "mean")
    }
    x_max, x_mean = (nets[k].inputs(batch.configs, a) for k in ("max", "mean"))
    loads = x_mean[:, 4:]
    peak = loads.abs().amax(dim=(1, 2, 3), keepdim=True)
    assert peak.max() > 50  # the contrast reaches the "mean" inputs
    assert torch.allclose(x_max[:, 4:], loads / peak)
    assert torch.equal(x_max[:, :4], x_mean[:, :4])
    assert torch.allclose(x_max[:, 4:].abs().amax(dim=(1, 2, 3)), torch.ones(len(a), dtype=a.dtype))
    assert torch.allclose(nets["max"].inputs(batch.configs, 7.0 * a), x_max)


@pytest.mark.mpi
def test_augmented_training_does_not_depend_on_the_ranks(comm):
    """With --augment, the CNN trained with the patches split over the
    ranks (each rank augments its own interior patches) equals the one trained on one rank."""
    rng = np.random.default_rng(7)
    fam = sample_family(np.exp(rng.normal(0.0, 1.0, (2, 24, 24))))
    settings = TrainingSettings(
        architecture="cnn",
        width=8,
        depth=3,
        constraint="projection",
        epochs=3,
        augment=True,
    )
    states = []
    for c in (comm, MPI.COMM_SELF):
        g = dl.create_nested_grids(c, 6, 24)
        basis = dl.MultiscaleBasis(g, 1)
        batch = export_patches(basis, fam.a, fam.training_parameters(2), with_correctors=False)
        trainer = DeepRitzTrainer(batch, torch.zeros(2, 1), settings, c)
        trainer.train()
        states.append(trainer.nets.state_dict())
        basis.destroy()
    for key, value in states[0].items():
        torch.testing.assert_close(value, states[1][key], rtol=1e-4, atol=1e-6)


def test_cli_augment_needs_a_coefficient_aware_network(tmp_path, capsys):
    """`train --augment` with a p-network: one message naming augment, exit 2, nothing
    trained; `--augment` and `--loads` reach the settings."""
    from dolfinx_lod.cli.app import build_parser
    from dolfinx_lod.cli.train import _settings

    base = ["train", "--family", "cont", "--samples", "2", "--fine", "16", "--coarse", "4"]
    base += ["--layers", "1", "--out", str(tmp_path / "run")]
    code, err = cli_main([*base, "--network", "mlp:8x2", "--augment"], capsys)
    assert code == 2 and "augment needs a coefficient-aware network" in err
    assert not (tmp_path / "run" / "model.pt").exists()
    args = build_parser().parse_args([*base, "--augment", "--loads", "mean"])
    settings = _settings(args)
    assert settings.augment and settings.loads == "mean"
    assert _settings(build_parser().parse_args(base)).loads == "max"

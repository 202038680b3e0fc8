"""Learned bases judged by the solution (``dolfinx_lod.neural.solutions``): the LOD solution of
a provider's basis against the classical LOD and the fine FEM."""

import json

import numpy as np
import pytest
import torch
from helpers import cli_main
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.interpolation import local_projection
from dolfinx_lod.neural import FixedCorrectors, LearnedCorrectors, TrainedModel, export_patches
from dolfinx_lod.neural.networks import CoefficientNetworks
from dolfinx_lod.neural.solutions import WORSE_FACTOR, solution_errors, worse_than_classical
from dolfinx_lod.samples import sample_family


def inclusions(n: int, count: int, contrast: float, seed: int) -> np.ndarray:
    """``count`` n x n fields: value ``contrast`` in a few random discs, 1 elsewhere."""
    rng = np.random.default_rng(seed)
    c = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(c, c)
    out = np.ones((count, n, n))
    for k in range(count):
        for _ in range(4):
            x0, y0, radius = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.15)
            out[k][(X - x0) ** 2 + (Y - y0) ** 2 <= radius**2] = contrast
    return out


@pytest.fixture(scope="module")
def problem():
    """H = 1/4, h = 1/16, l = 1; two inclusion fields of contrast 100, exported with their
    classical correctors."""
    torch.set_num_threads(1)
    grids = dl.create_nested_grids(MPI.COMM_SELF, 4, 16)
    family = sample_family(inclusions(16, 2, 100.0, 3))
    basis = dl.MultiscaleBasis(grids, 1)
    batch = export_patches(basis, family.a, family.training_parameters(2))
    yield grids, family, batch
    basis.destroy()


def test_solution_errors_of_the_classical_and_an_untrained_basis(problem):
    """The classical provider reproduces the classical LOD solution (error 0), its error against
    the fine FEM is solve_elliptic's, and an untrained network is reported as worse than
    classical by more than WORSE_FACTOR, as is the mean corrector here."""
    grids, family, batch = problem
    torch.manual_seed(0)
    nets = CoefficientNetworks(1, batch.Pi.float(), 8, 3)
    metadata = {"domain": [[0.0, 0.0], [1.0, 1.0]], "n": 16, "NH": 4, "l": 1}
    metadata |= {"num_params": 1, "architecture": "cnn", "width": 8, "depth": 3}
    model = TrainedModel.gather(MPI.COMM_SELF, batch, nets, metadata | {"constraint": "projection"})
    C = batch.C.double().numpy()
    mean = {c: C[g, :, : batch.num_vertices[g]].mean(0) for g, c in enumerate(batch.cells)}
    providers = {
        "same": dl.ClassicalCorrectors(grids, local_projection(grids)),
        "untrained": LearnedCorrectors(model, None, grids.r),
        "mean": FixedCorrectors(mean),
    }
    params = family.training_parameters(2)
    errors = solution_errors(grids, 1, family, params, providers)
    for norm in ("energy", "l2"):
        assert errors["vs_classical"]["same"][norm]["max"] < 1e-8
    reference = [dl.solve_elliptic(grids, family.a, 1, p=p, reference=True) for p in params]
    expected = [r.errors["energy"] for r in reference]
    classical = errors["vs_fine"]["classical"]["energy"]
    assert classical["mean"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert classical["max"] == pytest.approx(np.max(expected), rel=1e-6)
    assert worse_than_classical(errors, "untrained") > WORSE_FACTOR
    assert worse_than_classical(errors, "same") == pytest.approx(1.0, rel=1e-6)
    assert errors["vs_classical"]["untrained"]["energy"]["mean"] > 0.5
    for r in reference:
        r.destroy()
    providers["same"].destroy()


@pytest.mark.mpi
def test_train_judges_by_the_solution(tmp_dir, capsys, comm):
    """train on a small inclusion family (contrast 100) reports the LOD-ANN solution against
    the classical LOD (solution_error_test, mean and max, energy and L2) beside the baselines';
    trained, its solution error is below the mean corrector's and its error against the fine
    FEM within 1.5x of the classical LOD's; barely trained (one epoch,
    without the Ritz output), it is reported as worse than classical, with one warning line."""
    if comm.rank == 0:
        fields = inclusions(16, 10, 100.0, 11)
        np.save(tmp_dir / "train.npy", fields[:8])
        np.save(tmp_dir / "test.npy", fields[8:])
    comm.Barrier()
    train = ["train", "--coefficients", tmp_dir / "train.npy", "--test-coefficients"]
    train += [tmp_dir / "test.npy", "--coarse", 4, "--fine", 16, "--layers", 1]
    train += ["--network", "cnn:16x4", "--lr-step", 20, "--lr-decay", 0.3]
    assert cli_main([*train, "--epochs", 30, "--out", tmp_dir / "a"], capsys)[0] == 0
    summary = json.loads((tmp_dir / "a" / "summary.json").read_text())
    learned = summary["solution_error_test"]
    for norm in ("energy", "l2"):
        assert 0 < learned[norm]["mean"] <= learned[norm]["max"]
    mean = summary["baseline_solution_errors_test"]["mean"]["energy"]["mean"]
    assert learned["energy"]["mean"] < mean and summary["beats_baselines"]["mean"]
    fine = summary["solution_error_fine_test"]
    # near the classical LOD's error against the fine FEM (either may be the smaller one)
    assert 0 < fine["learned"]["energy"]["mean"] < 1.5 * fine["classical"]["energy"]["mean"]
    # one epoch of the plain outputs (with the Ritz output one epoch is already close)
    code, err = cli_main([*train, "--ritz", 0, "--epochs", 1, "--out", tmp_dir / "b"], capsys)
    assert code == 0
    summary = json.loads((tmp_dir / "b" / "summary.json").read_text())
    assert summary["worse_than_classical"] > 2 and summary["warning"]
    if comm.rank == 0:
        lines = [line for line in err.splitlines() if "warning" in line]
        assert len(lines) == 1 and "worse than the classical LOD" in lines[0]

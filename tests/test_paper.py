"""The paper's experiments: settings of the demos, test schedules, error metric, Fig. 3 node."""

import numpy as np
import pytest
import torch
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod.grids import corner_bits, lattice_coordinates
from dolfinx_lod.interpolation import local_projection
from dolfinx_lod.neural import DeepRitzTrainer, TrainingSettings, export_patches
from dolfinx_lod.neural.provider import scale_parameters
from dolfinx_lod.neural.workflow import node_networks
from dolfinx_lod.paper.compare import compare_time_loops, euclidean_error
from dolfinx_lod.paper.examples import EXAMPLE1_SIZES, example1, example1_start, example2
from dolfinx_lod.paper.experiments import schedule_clearance, sized_example
from dolfinx_lod.paper.figures import configuration_vertices
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["quick", "paper"])
def test_demos_use_the_papers_setting(comm, mode):
    """K = 40 / 15 training parameters and 25 schedules (one label each); Example 1's
    coefficient in [0.1, 1] by default (the paper's text), [0.01, 1] on request."""
    one, two = example1(mode, comm=comm), example2(mode, comm=comm)
    assert (one.samples, two.samples) == (40, 15)
    assert len(one.schedules) == len(one.schedule_labels) == len(two.schedules) == 25
    assert one.alpha == 0.1 and one.family.name == "cont0.1"
    assert example1(mode, comm=comm, alpha=0.01).family.name == "cont"
    paper = mode == "paper"
    assert (one.network == "mlp:128x8") is paper and one.settings.compile is paper
    assert two.network == ("mlp:128x8" if paper else "reduced:16:32x3")
    assert (one.settings.lr, one.settings.lr_decay, one.settings.lr_step) == (
        (1e-3, 0.9, 1000) if paper else (1e-2, 0.9, 1000)
    )


@pytest.mark.mpi
@pytest.mark.parametrize("mode", ["quick", "paper", "tiny"])
def test_schedules_never_take_a_training_parameter(comm, mode):
    """At every time step t_m, m = 0..M, every test schedule's p(t_m) differs from every
    training parameter (Example 1: no saturation at p = 1, a training value)."""
    for example in (example1(mode, comm=comm), example2(mode, comm=comm)):
        train = example.family.training_parameters(example.samples)
        for s in example.schedules:
            for t in np.linspace(0, example.T, example.steps + 1):
                p = np.atleast_1d(s(t))
                example.family.check(p)  # in the range
                assert np.abs(p - train).max(axis=1).min() > 1e-9
        assert schedule_clearance(example) > 1e-9


@pytest.mark.mpi
def test_a_schedule_on_a_training_value_is_refused(comm):
    """The schedule of the earlier Example 1, min(p (1 + 0.2 t), 1), reaches the training
    value p = 1 for large p: refused with a message."""
    size = EXAMPLE1_SIZES["quick"]
    family = dl.coefficients.cont_family(size["n"], low=0.1)
    p0 = family.test_parameters(size["tests"], seed=7)
    assert (p0 * 1.2 > 1).any()  # the draw that saturates
    with pytest.raises(ValueError, match="takes a training parameter"):
        sized_example(
            1,
            "quick",
            size,
            family,
            None,
            None,
            comm,
            schedule=lambda p, t: np.minimum(p * (1 + 0.2 * t), 1.0),
            label=str,
        )
    assert example1_start(np.array([0.01, 1.0])) == pytest.approx([0.01, 1 / 1.2])


@pytest.mark.mpi
def test_euclidean_error_over_all_steps(comm):
    """||U - U_ref||_2 / ||U_ref||_2 over the stacked steps, from rank-owned pieces."""
    rng = np.random.default_rng(comm.rank)
    u = [rng.normal(size=5) for _ in range(3)]
    ref = [rng.normal(size=5) for _ in range(3)]
    every_u = comm.allgather(np.concatenate(u))
    every_ref = comm.allgather(np.concatenate(ref))
    expected = np.linalg.norm(np.concatenate(every_u) - np.concatenate(every_ref))
    expected /= np.linalg.norm(np.concatenate(every_ref))
    assert euclidean_error(comm, u, ref) == pytest.approx(expected, rel=1e-12)


@pytest.mark.mpi
def test_compare_time_loops_against_separate_runs(comm):
    """The LOD of every provider and one FEM advanced side by side: a second classical
    provider reproduces the classical LOD; the LOD's error against the FEM at T is that of a
    separate :func:`run_parabolic` with its own FEM; the snapshots are gathered on rank 0 at
    the snapshot steps (every rank returns: no collective on rank 0 alone)."""
    grids = dl.create_nested_grids(comm, 4, 16)
    family = dl.coefficients.cont_family(16)

    def schedule(t):
        return 0.3 + 0.2 * t

    classical = dl.ClassicalCorrectors(grids, local_projection(grids))
    out = compare_time_loops(
        grids, 1, family, schedule, 1.0, 3, {"same": classical}, snapshot_steps=(1, 3)
    )
    classical.destroy()
    runs = out["runs"]
    assert runs["same"]["rel_error_vs_lod"] <= 1e-10
    assert runs["same"]["rel_error_vs_lod_euclidean_all_steps"] <= 1e-10
    coefficient = CoefficientSchedule.from_family(family.a, lambda t: family.check(schedule(t)))
    alone = run_parabolic(grids, coefficient, 1.0, 3, 1, reference=True)
    assert runs["lod"]["rel_error_vs_fem"] == pytest.approx(alone.final_errors["l2"], rel=1e-6)
    assert runs["lod"]["rel_error_vs_fem"] > 1e-3  # the LOD is not the FEM on this grid
    alone.basis.destroy()
    for name in ("lod", "same"):
        assert sorted(out["snapshots"][name]) == [1, 3]
        shot = out["snapshots"][name][3]
        assert shot["t"] == pytest.approx(1.0)
        if comm.rank == 0:
            assert shot["u"].shape == shot["fem"].shape == (17, 17)
            assert shot["a"].shape == (16, 16)
        else:
            assert shot["u"] is shot["fem"] is shot["a"] is None


@pytest.mark.mpi
def test_node_networks_and_configuration_vertices(comm):
    """The networks (T, j) of node (0.5, 0.5) are the four elements at that vertex with the
    vertex as their corner j; Fig. 4 shows one vertex per patch configuration (9)."""
    g = dl.create_nested_grids(comm, 6, 12)
    pairs = node_networks(g, (0.5, 0.5))
    assert len(pairs) == 4
    for cell, j in pairs:
        corner = lattice_coordinates(np.array([cell]), 6, 2)[0] + corner_bits(2)[j]
        assert tuple(corner) == (3, 3)
    assert len(node_networks(g, (0.0, 0.0))) == 1  # a domain corner: one element
    vertices = configuration_vertices(g)
    assert len({cell for cell, _ in vertices}) == 9
    for (cx, cy), key in vertices:
        vx, vy = key % 7, key // 7
        assert 0 < vx < 6 and 0 < vy < 6  # interior: a basis function of V_H
        assert vx - cx in (0, 1) and vy - cy in (0, 1)  # a corner of T


@pytest.mark.mpi
def test_node_loss_is_the_sum_of_its_networks_terms(comm):
    """The recorded loss curve of node (0.5, 0.5) equals the sum of the energy and penalty
    terms of its networks (T, j), summed over the ranks, at the first epoch."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(comm, 4, 8)
    family = dl.coefficients.cont_family(8, low=0.1)
    basis = dl.MultiscaleBasis(g, 1)
    train = family.training_parameters(3)
    batch = export_patches(basis, family.a, train, with_correctors=False)
    settings = TrainingSettings(architecture="mlp", width=8, depth=2, epochs=1)
    node = node_networks(g, (0.5, 0.5))
    trainer = DeepRitzTrainer(batch, scale_parameters(family, train), settings, comm, node=node)
    with torch.no_grad():
        energy, penalty = trainer.loss_terms()
    index = {int(c): k for k, c in enumerate(batch.cells)}
    local = [sum(float(t[index[c], j]) for c, j in node if c in index) for t in (energy, penalty)]
    expected = comm.allreduce(np.array(local), op=MPI.SUM)
    trainer.train()
    h = trainer.history
    assert len(h.node_energy) == len(h.node_penalty) == 1
    assert h.node_energy[0] == pytest.approx(expected[0], rel=1e-5)
    assert h.node_penalty[0] == pytest.approx(expected[1], rel=1e-5) and expected[1] > 0
    basis.destroy()


@pytest.mark.slow  # torch.compile: about 1 min (serial only)
def test_compiled_paper_network_trains_like_the_eager_one(comm):
    """torch.compile of the mlp (the --paper speed-up) gives the same outputs and the same
    loss history as the eager networks (to float32 rounding)."""
    torch.set_num_threads(1)
    g = dl.create_nested_grids(comm, 3, 6)
    family = dl.coefficients.cont_family(6)
    basis = dl.MultiscaleBasis(g, 1)
    train = family.training_parameters(2)
    batch = export_patches(basis, family.a, train, with_correctors=False)
    params = scale_parameters(family, train)
    histories = []
    for compiled in (False, True):
        settings = TrainingSettings(
            architecture="mlp", width=8, depth=3, epochs=3, compile=compiled
        )
        trainer = DeepRitzTrainer(batch, params, settings, comm)
        assert (trainer.forward is not trainer.nets) is compiled
        with torch.no_grad():
            assert torch.allclose(
                trainer.outputs(), trainer.nets(batch.coords, params), rtol=1e-5, atol=1e-7
            )
        trainer.train()
        histories.append(np.array([trainer.history.energy, trainer.history.penalty]))
    assert np.allclose(histories[0], histories[1], rtol=1e-4, atol=1e-9)
    basis.destroy()

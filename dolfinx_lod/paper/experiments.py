"""Building blocks of the paper's experiments: cached LOD-ANN training and time loops that
compare the classical LOD, LOD-ANN and a baseline basis on the same coefficient schedule."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from mpi4py import MPI

from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids, create_nested_grids
from dolfinx_lod.io import OutputSet, gather_cell_array, gather_vertex_array, write_json
from dolfinx_lod.lod import relative_errors
from dolfinx_lod.neural.checkpoints import RESUMABLE_SETTINGS, checkpoint_pattern, read_checkpoint
from dolfinx_lod.neural.export import export_patches
from dolfinx_lod.neural.figures import plot_node_loss
from dolfinx_lod.neural.presets import PRESETS, TrainingSettings, preset
from dolfinx_lod.neural.provider import FORMAT, LearnedCorrectors, TrainedModel
from dolfinx_lod.neural.trainer import History
from dolfinx_lod.neural.workflow import (
    baselines,
    node_networks,
    train_and_evaluate,
    training_problem,
)
from dolfinx_lod.parallel import InputError, LodError, OutputError, collective
from dolfinx_lod.progress import interactive
from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic

#: The node whose correction's loss curve is recorded (paper Fig. 3: node (0.5, 0.5)).
CENTRE = (0.5, 0.5)


def cache_folder() -> Path:
    """Where trained models are cached: $DOLFINX_LOD_CACHE or ~/.cache/dolfinx_lod/models."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dolfinx_lod"
    return Path(os.environ.get("DOLFINX_LOD_CACHE", default / "models"))


def cached_training(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    test_samples: int,
    settings: TrainingSettings,
    cache: Path | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any], bool]:
    """Train (or reuse) the corrector networks for these settings. Collective.

    The model is stored in a folder keyed by a hash of everything that determines the training
    path (all settings but :data:`RESUMABLE_SETTINGS`, e.g. the epochs), so a rerun with the
    same settings skips training. A folder whose model was trained for other epochs, or whose
    training was interrupted, holds the checkpoints (every ``settings.checkpoint_every``
    epochs): training resumes from them (the same number of ranks) up to ``settings.epochs``.
    Returns (folder, training summary, reused).
    """
    key_data = {
        "family": family.name,
        "n": grids.fine,
        "NH": grids.coarse,
        "l": layers,
        "domain": grids.domain,
        "samples": samples,
        "test_samples": test_samples,
        "settings": {k: v for k, v in asdict(settings).items() if k not in RESUMABLE_SETTINGS},
        "format": FORMAT,
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    folder = (cache or cache_folder()) / f"{family.name}-{key}"
    summary = _cached_summary(grids.comm, folder)
    reused = summary is not None and summary["settings"]["epochs"] == settings.epochs
    if not reused:
        problem = training_problem(grids, layers, family, samples)
        resume = read_checkpoint(grids.comm, folder, asdict(settings), problem) is not None
        keep = (checkpoint_pattern(grids.comm),)
        output = OutputSet(grids.comm, folder, "--cache (model folder)", keep, live=True)
        train_and_evaluate(
            grids,
            layers,
            family,
            samples,
            test_samples,
            settings,
            output,
            resume=resume,
            progress=progress and interactive(),  # the training's tqdm bar: on a terminal only
            node=node_networks(grids, CENTRE),
        )
        summary = _cached_summary(grids.comm, folder)
    if summary is None:
        raise InputError(damaged_cache(folder / "summary.json", FileNotFoundError("missing")))
    return folder, summary, reused


def _cached_summary(comm: MPI.Comm, folder: Path) -> dict[str, Any] | None:
    """The training summary of a cached model folder (None if it has no model yet).
    Collective: a damaged summary raises ``InputError`` on every rank."""
    summary = None
    with collective(comm, InputError):
        if comm.rank == 0 and (folder / "model.pt").exists():
            try:
                summary = json.loads((folder / "summary.json").read_text())
            except (OSError, ValueError) as e:
                raise InputError(damaged_cache(folder / "summary.json", e)) from e
    return comm.bcast(summary)


def damaged_cache(path: Path, error: Exception) -> str:
    """The message for a damaged file in the model cache: what and how to clear it."""
    return (
        f"the cached model file {path} is damaged ({error}); delete the folder {path.parent} "
        "to train anew, or pass --cache with another folder"
    )


def load_cached_model(folder: Path, grids: NestedGrids, layers: int, family: Family):
    """The cached model of ``folder`` (checked for the problem). Collective: a damaged file
    raises ``InputError`` on every rank, saying how to clear the cache."""
    model = []
    with collective(grids.comm, InputError):
        try:
            model.append(TrainedModel.load(folder / "model.pt", grids, layers, family))
        except (OSError, ValueError) as e:
            raise InputError(damaged_cache(folder / "model.pt", e)) from e
    return model[0]


def compare_time_loops(
    grids: NestedGrids,
    layers: int,
    family: Family,
    schedule: Callable[[float], npt.ArrayLike],
    T: float,
    steps: int,
    providers: dict[str, Any],
    snapshot_steps: tuple[int, ...] = (),
    capacity: Any = 1.0,
    source: Any = 1.0,
) -> dict[str, Any]:
    """Run the parabolic loop with the classical correctors (``"lod"``, full update) and with
    each provider (name -> provider) on the coefficient a(x, p(t)); collect relative L2 errors at
    T of every basis against the classical LOD and against the fine FEM, per-step times, and
    gathered (n+1, n+1) snapshots (rank 0) at ``snapshot_steps``. Collective."""
    runs: dict[str, Any] = {}
    walls: dict[str, float] = {}
    snapshots: dict[str, dict[int, Any]] = {}
    trajectories: dict[str, list[npt.NDArray]] = {}  # owned u_ms values of every step
    coefficient = CoefficientSchedule.from_family(family.a, lambda t: family.check(schedule(t)))
    for name, provider in {"lod": None, **providers}.items():
        shots: dict[int, Any] = {}
        trajectory = trajectories.setdefault(name, [])

        def observe(view, shots=shots, trajectory=trajectory):
            owned_dofs = view.u_ms.function_space.dofmap.index_map.size_local
            trajectory.append(view.u_ms.x.array[:owned_dofs].copy())
            if view.m in snapshot_steps:
                owned = grids.fine_cell_keys.size
                a_fun = view.a
                shots[view.m] = {
                    "t": view.t,
                    "u": gather_vertex_array(grids, view.u_ms),
                    "fem": gather_vertex_array(grids, view.u_h),
                    "a": gather_cell_array(
                        grids, a_fun.x.array[a_fun.function_space.dofmap.list[:owned, 0]]
                    ),
                }

        t0 = time.perf_counter()
        res = run_parabolic(
            grids,
            coefficient,
            T,
            steps,
            layers,
            provider=provider,
            capacity=capacity,
            source=source,
            observer=observe,
            reference=True,
        )
        walls[name] = time.perf_counter() - t0
        runs[name] = res
        snapshots[name] = shots
    M = _mass(grids)
    ref = runs["lod"].u_ms.x.petsc_vec
    out: dict[str, Any] = {"snapshots": snapshots, "runs": {}}
    for name, res in runs.items():
        rec = res.records
        out["runs"][name] = {
            "rel_error_vs_lod": relative_errors(res.u_ms.x.petsc_vec, ref, M, M)["l2"],
            "rel_error_vs_lod_euclidean_all_steps": euclidean_error(
                grids.comm, trajectories[name], trajectories["lod"]
            ),
            "rel_error_vs_fem": res.final_errors["l2"],
            "basis_seconds_per_step": float(np.mean([r["timings"]["basis_update"] for r in rec])),
            "coarse_seconds_per_step": float(
                np.mean(
                    [r["timings"]["coarse_assembly"] + r["timings"]["coarse_solve"] for r in rec]
                )
            ),
            "fem_seconds_per_step": float(
                np.mean([r["timings"]["fine_assembly"] + r["timings"]["fine_solve"] for r in rec])
            ),
            "wall_seconds": walls[name],
        }
        res.basis.destroy()
    M.destroy()
    return out


def euclidean_error(comm: MPI.Comm, u: list[npt.NDArray], ref: list[npt.NDArray]) -> float:
    """The error metric of the paper's code: ||U - U_ref||_2 / ||U_ref||_2 with U the nodal
    values of all time steps stacked (Euclidean, unweighted). ``u``, ``ref``: owned values per
    step. Collective."""
    local = np.array(
        [
            sum(float(((a - b) ** 2).sum()) for a, b in zip(u, ref, strict=True)),
            sum(float((b**2).sum()) for b in ref),
        ]
    )
    diff, norm = comm.allreduce(local, op=MPI.SUM)
    return float(np.sqrt(diff / norm))


def basis_function(grids: NestedGrids, B, vertex_key: int) -> npt.NDArray | None:
    """Column of B for the coarse vertex ``vertex_key`` as an (n+1, n+1) array on rank 0."""
    from dolfinx_lod.lod import to_function

    e, x = B.createVecRight(), B.createVecLeft()
    if grids.comm.rank == 0:
        e.setValue(int(grids.coarse_dof_global[vertex_key]), 1.0)
    e.assemble()
    B.mult(e, x)
    u = to_function(grids.V_h, x)
    for v in (e, x):
        v.destroy()
    return gather_vertex_array(grids, u)


def _mass(grids: NestedGrids):
    """Fine L2 mass matrix M (for relative L2 errors)."""
    import dolfinx.fem.petsc

    from dolfinx_lod.forms import mass_form

    M = dolfinx.fem.petsc.assemble_matrix(mass_form(grids.V_h))
    M.assemble()
    return M


@dataclass
class Example:
    """One of the paper's experiments: problem, training budget and test schedules."""

    number: int
    mode: str
    grids: NestedGrids
    family: Family
    layers: int
    samples: int
    test_samples: int
    steps: int
    T: float
    settings: TrainingSettings
    schedules: list[Callable[[float], npt.ArrayLike]]
    schedule_labels: list[str]
    capacity: Any = 1.0
    source: Any = 1.0
    paper: dict[str, float] = field(default_factory=dict)  # the paper's reported numbers
    alpha: float | None = None  # Example 1: the coefficient's lower bound
    network: str = ""  # the --network spec of the settings
    #: Held-out draws p_i behind the schedules (schedule i at t: ``schedule(p_i, t)``).
    test_draws: npt.NDArray[np.float64] | None = None


def sized_example(
    number: int,
    mode: str,
    size: dict[str, int],
    family: Family,
    network: str | None,
    epochs: int | None,
    comm: MPI.Comm,
    schedule: Callable[[npt.NDArray[np.float64], float], npt.ArrayLike],
    label: Callable[[npt.NDArray[np.float64]], str],
    **extra: Any,
) -> Example:
    """A paper example (l = 1, T = 1) at ``size`` (NH, n, samples, tests, steps) with the
    training settings of ``mode``, and one test schedule t -> schedule(p_i, t) per held-out
    parameter p_i (``tests`` of them, seed 7); ``extra``: capacity, source, paper, alpha.

    Raises:
        ValueError: A schedule takes a training parameter at a time step
            (:func:`schedule_clearance`).
    """
    p0 = family.test_parameters(size["tests"], seed=7)
    spec = network or PRESETS[mode].network
    example = Example(
        number=number,
        mode=mode,
        grids=create_nested_grids(comm, size["NH"], size["n"]),
        family=family,
        layers=1,
        samples=size["samples"],
        test_samples=size["tests"],
        steps=size["steps"],
        T=1.0,
        settings=training_settings(mode, network, epochs),
        schedules=[lambda t, p=p: schedule(p, t) for p in p0],
        schedule_labels=[label(p) for p in p0],
        network=spec,
        test_draws=p0,
        **extra,
    )
    clearance = schedule_clearance(example)
    if not clearance > 1e-9:
        raise ValueError(
            f"Example {number} ({mode}): a test schedule takes a training parameter "
            f"(distance {clearance:g}); schedules must stay off the training values"
        )
    return example


def schedule_clearance(example: Example) -> float:
    """Smallest distance (max norm) between a schedule's parameter p(t_m) at a time t_m =
    m T / steps, m = 0..steps, and a training parameter: > 0 means no test schedule ever uses
    a training value."""
    train = example.family.training_parameters(example.samples)
    times = np.linspace(0.0, example.T, example.steps + 1)
    values = np.array([np.atleast_1d(s(t)) for s in example.schedules for t in times])
    return float(np.abs(values[:, None, :] - train[None]).max(axis=2).min())


def example_arguments(description: str, argv=None, alpha: bool = False) -> argparse.Namespace:
    """Command line of the demos: --quick (default) | --paper | --tiny, --network, --epochs,
    --cache, --out (and --alpha if ``alpha``); ``mode`` is set to the chosen size. Bad values
    exit with a message naming the option and the allowed range (before any work)."""
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="default: the paper's setting (K training parameters, 25 test schedules) with the "
        "best network here",
    )
    size.add_argument(
        "--paper",
        action="store_true",
        help="the paper's setting with the paper's network and optimizer (mlp:128x8, Adam "
        "1e-3, decay 0.9 per 1000 epochs, 30 000 epochs: days on 2 cores; checkpointed, a "
        "rerun resumes)",
    )
    size.add_argument("--tiny", action="store_true", help="a very small version (tests)")
    parser.add_argument("--network", help="override the network, e.g. mlp:128x8")
    parser.add_argument(
        "--epochs",
        type=int,
        help="override the training epochs (a budget; a rerun with more epochs resumes from the "
        "checkpoints)",
    )
    if alpha:
        parser.add_argument(
            "--alpha",
            type=float,
            default=ALPHAS[0],
            choices=ALPHAS,
            help="lower bound of the coefficient: 0.1 (the paper's text, default) or 0.01 (the "
            "paper's code)",
        )
    parser.add_argument("--cache", type=Path, help="model cache folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    args.mode = "paper" if args.paper else "tiny" if args.tiny else "quick"
    return args


#: Lower coefficient bounds of Example 1: the paper's text (0.1, the default) and code (0.01).
ALPHAS = (0.1, 0.01)


def training_settings(
    mode: str, network: str | None = None, epochs: int | None = None
) -> TrainingSettings:
    """Training settings of a demo mode: the preset ``mode`` ("paper", "quick" or "tiny" of
    :data:`~dolfinx_lod.neural.presets.PRESETS`) for its network or ``network``, trained
    ``epochs`` epochs if given."""
    return preset(mode).settings(network, **({"epochs": epochs} if epochs else {}))


def baseline_correctors(example: Example) -> dict[str, Any]:
    """Baseline providers (:func:`dolfinx_lod.neural.workflow.baselines`: ``none``, ``mean``,
    ``nearest``) from the classical correctors at the training parameters. Collective."""
    basis = MultiscaleBasis(example.grids, example.layers)
    train = example.family.training_parameters(example.samples)
    batch = export_patches(basis, example.family.a, train, dtype=torch.float64)
    providers = baselines(basis, batch, example.family, train)
    basis.destroy()
    return providers


def run_example(example: Example, out: Path, cache: Path | None = None) -> dict[str, Any]:
    """Offline training (cached), the LOD / LOD-ANN / baseline time loops for every schedule,
    figures (paper Figs. 3-8 style) and ``out/summary.json``. Collective; returns the summary."""
    with OutputSet(example.grids.comm, out) as output:  # prepared before any work
        summary = _run_example(example, output, cache)
        output.commit()
    return summary


def _run_example(example: Example, output: OutputSet, cache: Path | None) -> dict[str, Any]:
    t_start = time.perf_counter()
    g, fam, ex, out = example.grids, example.family, example, output.out
    folder, trained, reused = cached_training(
        g, ex.layers, fam, ex.samples, ex.test_samples, ex.settings, cache
    )
    model = load_cached_model(folder, g, ex.layers, fam)
    learned = LearnedCorrectors(model, fam, g.r)
    baselines = baseline_correctors(ex)
    providers = {"ann": learned, "baseline": baselines["mean"], "none": baselines["none"]}
    shots = (1, ex.steps // 2, ex.steps)
    runs = [
        compare_time_loops(
            g,
            ex.layers,
            fam,
            schedule,
            ex.T,
            ex.steps,
            providers,
            snapshot_steps=shots if i == 0 else (),
            capacity=ex.capacity,
            source=ex.source,
        )
        for i, schedule in enumerate(ex.schedules)
    ]

    def mean_of(run: str, key: str) -> float:
        return float(np.mean([r["runs"][run][key] for r in runs]))

    errors = np.array([r["runs"]["ann"]["rel_error_vs_lod"] for r in runs])
    euclidean = np.array([r["runs"]["ann"]["rel_error_vs_lod_euclidean_all_steps"] for r in runs])
    summary: dict[str, Any] = {
        "example": ex.number,
        "mode": ex.mode,
        "settings": {
            "n": g.fine,
            "NH": g.coarse,
            "l": ex.layers,
            "alpha": ex.alpha,
            "family": fam.description,
            "network": ex.network,
            "samples": ex.samples,
            "test_samples": ex.test_samples,
            "T": ex.T,
            "steps": ex.steps,
            "tau": ex.T / ex.steps,
            "training": asdict(ex.settings),
            "test_schedules": ex.schedule_labels,
            "schedule_clearance": schedule_clearance(ex),
        },
        "ranks": g.comm.size,
        "model": str(folder),
        "model_reused": reused,
        "training": {
            k: trained.get(k) for k in ("epochs", "selected_epoch", "resumed", "train_seconds")
        },
        "test_schedules": ex.schedule_labels,
        "rel_error_final": errors.tolist(),
        "rel_error_final_mean": float(errors.mean()),
        "rel_error_final_max": float(errors.max()),
        "rel_error_euclidean_all_steps": euclidean.tolist(),
        "rel_error_euclidean_all_steps_mean": float(euclidean.mean()),
        "baseline_rel_error_euclidean_all_steps_mean": mean_of(
            "baseline", "rel_error_vs_lod_euclidean_all_steps"
        ),
        "basis_error_mean": trained["basis_error_test"],
        "basis_error_mean_nodal": trained["basis_error_test_nodal"],
        "baseline_basis_errors": trained["baseline_errors_test"],
        "lod_vs_fem_final_mean": mean_of("lod", "rel_error_vs_fem"),
        "ann_vs_fem_final_mean": mean_of("ann", "rel_error_vs_fem"),
        "baseline_rel_error_final_mean": mean_of("baseline", "rel_error_vs_lod"),
        "no_corrector_rel_error_final_mean": mean_of("none", "rel_error_vs_lod"),
        "timings": {
            "offline_training_seconds": trained["train_seconds"],
            "classical_basis_seconds_per_step": mean_of("lod", "basis_seconds_per_step"),
            "ann_basis_seconds_per_step": mean_of("ann", "basis_seconds_per_step"),
            "coarse_solve_seconds_per_step": mean_of("lod", "coarse_seconds_per_step"),
            "fem_seconds_per_step": mean_of("lod", "fem_seconds_per_step"),
        },
        "paper": ex.paper,
    }
    summary["figures"] = _figures(ex, runs[0]["snapshots"], learned, folder, output, shots)
    summary["wall_seconds"] = time.perf_counter() - t_start
    with collective(g.comm, OutputError):
        if g.comm.rank == 0:
            write_json(output.path("summary.json"), summary)
    if g.comm.rank == 0:
        print(
            f"Example {ex.number} ({ex.mode}, {ex.network}, alpha {ex.alpha}, K = {ex.samples}, "
            f"{len(runs)} schedules, {g.comm.size} ranks): LOD vs LOD-ANN at T: mean "
            f"{summary['rel_error_final_mean']:.4f}, max {summary['rel_error_final_max']:.4f} "
            f"(paper: {ex.paper}); Euclidean over all steps "
            f"{summary['rel_error_euclidean_all_steps_mean']:.4f}; baseline (mean training "
            f"corrector) {summary['baseline_rel_error_final_mean']:.4f}, no corrector "
            f"{summary['no_corrector_rel_error_final_mean']:.4f}; basis error "
            f"{summary['basis_error_mean']:.3f}, nodal {summary['basis_error_mean_nodal']:.3f}; "
            "LOD vs FEM "
            f"{summary['lod_vs_fem_final_mean']:.4f}; {summary['wall_seconds']:.0f} s; "
            f"results in {out}/"
        )
    return summary


def configuration_vertices(grids: NestedGrids) -> list[tuple[tuple[int, int], int]]:
    """For each of the 9 patch configurations of l = 1 (the coarse cells T = (c_x, c_y) with
    c in {0, N_H / 2, N_H - 1}): T and the key of T's corner nearest to the domain centre, an
    interior coarse vertex whose basis function is corrected on T's patch (paper Fig. 4)."""
    NH = grids.coarse
    out = []
    for cy in (0, NH // 2, NH - 1):
        for cx in (0, NH // 2, NH - 1):
            vx, vy = (c + 1 if 2 * c < NH else c for c in (cx, cy))
            out.append(((cx, cy), vy * (NH + 1) + vx))
    return out


def _figures(ex: Example, sh, learned, folder: Path, output: OutputSet, shots) -> dict[str, str]:
    """The paper's figures into the staging folder of ``output``: loss of the node (0.5, 0.5)
    (Fig. 3), classical and learned basis functions for the 9 patch configurations (Fig. 4)
    and three cross sections (Fig. 5), solutions (Fig. 6) and cross sections (Fig. 7) at three
    times, |LOD - LOD-ANN| at those times (Fig. 8); for the battery cell also two training
    coefficients and a test coefficient at t = 1/6 (Fig. 9) and LOD / LOD-ANN solutions for two
    training coefficients at t = 1/2, 1 and a test schedule at t = 1/8 (Fig. 11). Collective
    (time loops, gathers); rank 0 plots (a failure raises on every rank)."""
    g, fam = ex.grids, ex.family
    p = ex.schedules[0](ex.T)
    vertices = configuration_vertices(g)
    columns: dict[str, list] = {}
    for name, provider in (("classical", None), ("learned", learned)):
        basis = MultiscaleBasis(g, ex.layers, provider=provider)
        B = basis.update(fam.a, p)
        columns[name] = [basis_function(g, B, key) for _, key in vertices]
        basis.destroy()
    battery = _battery_snapshots(ex, learned) if ex.number == 2 else None
    figures: dict[str, str] = {}
    with collective(g.comm, OutputError):
        if g.comm.rank == 0:
            figures = _plot_figures(ex, sh, columns, folder, output.staging, shots)
            if battery is not None:
                figures.update(_plot_battery(ex, battery, output.staging))
    return figures


def _battery_snapshots(ex: Example, learned) -> dict[str, Any]:
    """Fig. 9 and 11 data: LOD and LOD-ANN snapshots for the first two training parameters
    (constant in time) at t = 1/2, 1 and for the first test schedule at t = 1/8. Collective."""
    train = ex.family.training_parameters(ex.samples)[:2]
    half, eighth = ex.steps // 2, max(ex.steps // 8, 1)
    runs = [
        compare_time_loops(
            ex.grids,
            ex.layers,
            ex.family,
            schedule,
            ex.T,
            ex.steps,
            {"ann": learned},
            snapshot_steps=steps,
            capacity=ex.capacity,
            source=ex.source,
        )["snapshots"]
        for schedule, steps in (
            *((lambda t, q=q: q, (half, ex.steps)) for q in train),
            (ex.schedules[0], (eighth,)),
        )
    ]
    test_t = ex.T / 6
    return {"train": train, "runs": runs, "test_t": test_t, "test_p": ex.schedules[0](test_t)}


def _plot_battery(ex: Example, data: dict[str, Any], out: Path) -> dict[str, str]:
    """Figs. 9 and 11 of the battery cell (rank 0)."""
    from dolfinx_lod.coefficients import battery_layers
    from dolfinx_lod.plotting import plot_solution_grid

    g, fam, n = ex.grids, ex.family, ex.grids.fine
    materials = {"CC": 0, "AM": 1, "AC": 2}
    rows = np.vectorize(materials.__getitem__)(battery_layers(np.arange(n)))
    layout = np.repeat(rows[:, None], n, axis=1).astype(float)
    mid = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(mid, mid)
    xy = np.stack([X.ravel(), Y.ravel()])
    panels = [("layers: 0 CC, 1 AM, 2 AC", layout, False)]
    for i, q in enumerate(data["train"]):
        panels.append((f"lambda, training p_{i + 1}", fam.a(xy, q).reshape(n, n), True))
    panels.append(
        (f"lambda, test at t = {data['test_t']:.3f}", fam.a(xy, data["test_p"]).reshape(n, n), True)
    )
    figures = {
        "coefficients": plot_solution_grid(
            out / "fig9_coefficients.png", [("", panels)], g.domain
        ).name
    }
    solution_rows = []
    for method, label in (("lod", "LOD"), ("ann", "LOD-ANN")):
        cells = []
        for i, shots in enumerate(data["runs"]):
            kind = f"training p_{i + 1}" if i < len(data["train"]) else "test"
            for _, shot in sorted(shots[method].items()):
                cells.append((f"{kind}, t = {shot['t']:.3f}", shot["u"], False))
        solution_rows.append((label, cells))
    figures["solutions_train_test"] = plot_solution_grid(
        out / "fig11_solutions.png", solution_rows, g.domain
    ).name
    return figures


def _plot_figures(ex: Example, sh, columns, folder: Path, out: Path, shots) -> dict[str, str]:
    """The figures of :func:`_figures` but those of the battery cell (rank 0)."""
    g = ex.grids
    from shutil import copyfile

    from dolfinx_lod.plotting import plot_cross_sections, plot_solution_grid

    summary = json.loads((folder / "summary.json").read_text())
    history = History(**summary["loss_history"]) if "loss_history" in summary else None
    if history is not None and history.node_energy:
        plot_node_loss(out / "fig3_loss.png", history, str(CENTRE))
    else:  # a cached model trained before the node's loss was recorded: the total loss
        copyfile(folder / "loss.png", out / "fig3_loss.png")
    x = np.linspace(g.domain[0][0], g.domain[1][0], g.fine + 1)
    mid = g.fine // 2
    y_mid = g.domain[0][1] + mid * g.h[1]
    classical, ann = columns["classical"], columns["learned"]
    vertices = configuration_vertices(g)
    titles = [f"T = {cell}" for cell, _ in vertices]
    figures = {"loss": "fig3_loss.png"}
    figures["basis"] = plot_solution_grid(
        out / "fig4_basis_functions.png",
        [
            ("classical", [(t, c, False) for t, c in zip(titles, classical, strict=True)]),
            ("learned", [(t, c, False) for t, c in zip(titles, ann, strict=True)]),
        ],
        g.domain,
    ).name
    sections = []
    for i in (3, 4, 5):  # the middle row of configurations: three basis functions
        key = vertices[i][1]
        row = key // (g.coarse + 1) * g.r  # fine row of the basis function's vertex
        y = g.domain[0][1] + row * g.h[1]
        sections.append(
            (
                f"{titles[i]}, y = {y:.3f}",
                [("classical", (x, classical[i][row])), ("learned", (x, ann[i][row]))],
            )
        )
    figures["basis_cross_section"] = plot_cross_sections(
        out / "fig5_basis_cross_sections.png", sections, "x"
    ).name
    figures["solutions"] = plot_solution_grid(
        out / "fig6_solutions.png",
        [
            (
                f"t = {sh['lod'][m]['t']:.3f}",
                [
                    ("coefficient", sh["lod"][m]["a"], True),
                    ("LOD", sh["lod"][m]["u"], False),
                    ("LOD-ANN", sh["ann"][m]["u"], False),
                ],
            )
            for m in shots
        ],
        g.domain,
    ).name
    figures["cross_sections"] = plot_cross_sections(
        out / "fig7_cross_sections.png",
        [
            (
                f"y = {y_mid:.3f}, t = {sh['lod'][m]['t']:.3f}",
                [
                    ("LOD", (x, sh["lod"][m]["u"][mid])),
                    ("LOD-ANN", (x, sh["ann"][m]["u"][mid])),
                    ("FEM", (x, sh["lod"][m]["fem"][mid])),
                ],
            )
            for m in shots
        ],
        "x",
    ).name
    figures["difference"] = plot_solution_grid(
        out / "fig8_difference.png",
        [
            (
                "",
                [
                    (
                        f"|LOD - LOD-ANN|, t = {sh['lod'][m]['t']:.3f}",
                        np.abs(sh["lod"][m]["u"] - sh["ann"][m]["u"]),
                        False,
                    )
                    for m in shots
                ],
            )
        ],
        g.domain,
    ).name
    return figures


def run_demo(main: Callable[[list[str]], Any], argv: list[str]) -> int:
    """Run a demo's ``main(argv)``; an error raised on every rank (bad input, a numerical
    failure, an output folder that cannot be written) prints one line on rank 0 and returns
    its exit code instead of a traceback."""
    try:
        main(argv)
    except LodError as e:
        if MPI.COMM_WORLD.rank == 0:
            print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0

"""The paper's examples as runs: settings, test schedules, the demos' command line and the
run that trains (cached, :mod:`.cache`), compares time loops (:mod:`.compare`) and draws the
figures (:mod:`.figures`)."""

from __future__ import annotations

import argparse
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
from dolfinx_lod.io import OutputSet, write_json
from dolfinx_lod.neural.export import export_patches
from dolfinx_lod.neural.presets import PRESETS, TrainingSettings, preset
from dolfinx_lod.neural.provider import LearnedCorrectors
from dolfinx_lod.neural.workflow import (
    baselines,
)
from dolfinx_lod.paper.cache import cached_training, load_cached_model
from dolfinx_lod.paper.compare import compare_time_loops
from dolfinx_lod.paper.figures import write_figures
from dolfinx_lod.parallel import LodError, OutputError, collective


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
    """Train (cached), run the time loops of every schedule, write figures and summary."""
    t_start = time.perf_counter()
    g, fam, ex = example.grids, example.family, example
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
    summary = _summary(ex, runs, trained, str(folder), reused)
    summary["figures"] = write_figures(ex, runs[0]["snapshots"], learned, folder, output, shots)
    summary["wall_seconds"] = time.perf_counter() - t_start
    with collective(g.comm, OutputError):
        if g.comm.rank == 0:
            write_json(output.path("summary.json"), summary)
    if g.comm.rank == 0:
        print(_closing_line(ex, summary, len(runs), output.out))
    return summary


def _summary(ex: Example, runs: list[dict], trained: dict, folder: str, reused: bool) -> dict:
    """summary.json of an example run: settings, training, errors of LOD-ANN and the
    baselines against the classical LOD (at T and over all steps), timings, the paper's
    figures."""
    g, fam = ex.grids, ex.family

    def mean_of(run: str, key: str) -> float:
        return float(np.mean([r["runs"][run][key] for r in runs]))

    errors = np.array([r["runs"]["ann"]["rel_error_vs_lod"] for r in runs])
    euclidean = np.array([r["runs"]["ann"]["rel_error_vs_lod_euclidean_all_steps"] for r in runs])
    return {
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
            # classical correctors read in training (POD bases, supervised warm start)
            "uses_corrector_data": ex.settings.uses_corrector_data,
            "test_schedules": ex.schedule_labels,
            "schedule_clearance": schedule_clearance(ex),
        },
        "ranks": g.comm.size,
        "model": folder,
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


def _closing_line(ex: Example, summary: dict, schedules: int, out: Path) -> str:
    """The demo's console summary."""
    return (
        f"Example {ex.number} ({ex.mode}, {ex.network}, alpha {ex.alpha}, K = {ex.samples}, "
        f"{schedules} schedules, {ex.grids.comm.size} ranks): LOD vs LOD-ANN at T: mean "
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

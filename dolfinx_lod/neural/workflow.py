"""Offline phase of LOD-ANN end to end: export, train, save, evaluate against the baselines.

:func:`train` is the public entry point (the trained model, no files); :func:`train_and_evaluate`
is the ``dolfinx-lod train`` workflow (model, summary and loss figure written as one set).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mpi4py import MPI

import dolfinx_lod
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids, corner_bits, lattice_index, lattice_keys
from dolfinx_lod.io import OutputSet, write_json
from dolfinx_lod.neural.checkpoints import checkpoint_pattern, commit_file, read_checkpoint
from dolfinx_lod.neural.export import PatchBatch, export_patches
from dolfinx_lod.neural.figures import plot_loss
from dolfinx_lod.neural.networks import NETWORKS
from dolfinx_lod.neural.presets import TrainingSettings, preset
from dolfinx_lod.neural.provider import (
    FixedCorrectors,
    LearnedCorrectors,
    NearestCorrectors,
    TrainedModel,
    compare_providers,
    counts_key,
    problem_metadata,
    scale_parameters,
)
from dolfinx_lod.neural.solutions import judge_by_solution, solution_errors
from dolfinx_lod.neural.trainer import DeepRitzTrainer
from dolfinx_lod.parallel import InputError, OutputError, collective, validate
from dolfinx_lod.samples import SampleFamily


def patch_dimension(grids: NestedGrids, layers: int) -> int:
    """Interior fine vertices of the largest patch N^l(T): an upper bound of the number of
    independent corrector values, so of useful patch modes Q."""
    w = np.minimum(2 * layers + 1, grids.coarse_sizes)
    return int(np.prod(w * grids.refinement - 1))


def check_network_size(
    settings: TrainingSettings, grids: NestedGrids, layers: int, family: Family
) -> None:
    """Raise ``InputError`` if the reduced networks ask for more patch modes than a patch has
    dimensions, if networks conditioned on p are to be trained on given fields (their
    index is no parameter), if the coefficient-aware network cannot serve the grids (it needs
    square or cubic fine cells) or if the symmetry augmentation is asked for in 3D (it has the
    8 symmetries of the square only). Rank-local (the same result on every rank)."""
    arch = NETWORKS[settings.architecture]
    if isinstance(family, SampleFamily) and not arch.cls.needs_coefficient:
        raise InputError(
            f"`family`: the {settings.architecture!r} networks are conditioned on the family "
            "parameter p, which given fields do not have; use `network` cnn:WxD or a "
            "parametrised family"
        )
    if arch.cls.needs_coefficient:
        h = grids.h
        if settings.augment and grids.dim != 2:
            raise InputError(
                "`augment`: the symmetry augmentation has the 8 symmetries of the square (2D "
                f"patches); the grids are {grids.dim}D: train without it"
            )
        if not np.allclose(h, h[0], rtol=1e-12) or len(set(grids.refinement)) > 1:
            raise InputError(
                "`grids`: the coefficient-aware network needs square fine cells (cubic in "
                f"3D) and the same H/h in every direction; got h = {h.tolist()}, H/h = "
                f"{grids.refinement.tolist()}"
            )
    dim = patch_dimension(grids, layers)
    if arch.modes and settings.modes > dim:
        raise InputError(
            f"`network` reduced:Q:...: Q ({settings.modes}) patch modes exceed the patch "
            f"dimension {dim} (interior fine vertices of the largest patch for n = "
            f"{counts_key(grids.fine_cells)}, NH = {counts_key(grids.coarse_cells)}, l = "
            f"{layers}); allowed: 1 <= Q <= {dim}"
        )


def node_networks(grids: NestedGrids, point: npt.ArrayLike) -> list[tuple[int, int]]:
    """The networks (coarse cell key T, corner j) whose correctors make up the correction of
    the basis function of the coarse vertex nearest to ``point`` (the elements at that vertex;
    paper Fig. 3: node (0.5, 0.5)). Rank-local (the same on every rank)."""
    z = lattice_index(np.asarray(point, dtype=np.float64)[None], grids.origin, grids.H)[0]
    z = np.clip(z, 0, grids.coarse)
    pairs = []
    for j, bits in enumerate(corner_bits(grids.dim)):
        cell = z - bits
        if np.all((cell >= 0) & (cell < grids.coarse)):
            pairs.append((int(lattice_keys(cell[None], grids.coarse)[0]), j))
    return pairs


def training_problem(grids: NestedGrids, layers: int, family: Family, samples: int) -> dict:
    """What the training data is made of: a checkpoint must match it to be resumed."""
    return {**problem_metadata(grids, layers, family), "samples": samples}


def held_out(test_family: Family, test_samples: int) -> dict:
    """The held-out set of a training run, recorded with its problem in the checkpoints (a
    resume with another one is refused)."""
    return {"test_family": test_family.name, "test_samples": test_samples}


def baselines(basis: MultiscaleBasis, batch, family: Family, params) -> dict[str, Any]:
    """Baseline providers ``none`` (no corrector), ``mean`` (mean training corrector) and, for a
    parametrized family, ``nearest`` (classical correctors of the nearest training parameter)
    for the owned patches of ``basis``, from the classical correctors ``batch.C``."""
    C = batch.C.double().numpy()
    n = batch.num_vertices
    cells = batch.cells
    baselines = {
        "none": FixedCorrectors({c: np.zeros((n[g], C.shape[-1])) for g, c in enumerate(cells)}),
        "mean": FixedCorrectors({c: C[g, :, : n[g]].mean(0) for g, c in enumerate(cells)}),
    }
    if not isinstance(family, SampleFamily):
        table = {c: C[g, :, : n[g]] for g, c in enumerate(cells)}
        baselines["nearest"] = NearestCorrectors(family, params, table)
    return baselines


def _online_seconds(grids: NestedGrids, layers: int, family: Family, provider, p) -> float:
    """Wall time of one full basis update (all correctors and B) for parameter p."""
    basis = MultiscaleBasis(grids, layers, provider=provider)
    basis.update(family.a, p)  # set-up (patch problems, JIT) not timed
    basis.invalidate()
    grids.comm.Barrier()
    t0 = time.perf_counter()
    basis.update(family.a, p)
    grids.comm.Barrier()
    seconds = time.perf_counter() - t0
    basis.destroy()
    return seconds


@dataclass
class TrainingRun:
    """What the offline phase sets up before training: the classical basis (reference and
    export), the exported training patches, the training parameters and the trainer."""

    basis: MultiscaleBasis
    batch: PatchBatch
    train_params: npt.NDArray[np.float64]
    trainer: DeepRitzTrainer
    export_seconds: float


def prepare_training(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    settings: TrainingSettings,
    node: list[tuple[int, int]] = (),
) -> TrainingRun:
    """Export the classical patch data of ``samples`` training parameters (and of validation
    parameters, distinct draws, for model selection; none for given fields) and create the
    trainer (recording the loss of the networks ``node``, :func:`node_networks`).
    Collective."""
    train_p = family.training_parameters(samples)
    t0 = time.perf_counter()
    basis = MultiscaleBasis(grids, layers)
    batch = export_patches(basis, family.a, train_p)
    export_seconds = time.perf_counter() - t0
    # Validation parameters (distinct draws from the test set): only S and F are needed.
    validation = None
    if not isinstance(family, SampleFamily):
        val_p = family.test_parameters(max(4, samples // 4), seed=20_000 + settings.seed)
        validation = (
            export_patches(basis, family.a, val_p, with_correctors=False),
            scale_parameters(family, val_p),
        )
    trainer = DeepRitzTrainer(
        batch,
        scale_parameters(family, train_p),
        settings,
        grids.comm,
        validation=validation,
        problem=training_problem(grids, layers, family, samples),
        node=node,
    )
    return TrainingRun(basis, batch, train_p, trainer, export_seconds)


def gather_model(
    run: TrainingRun, grids: NestedGrids, layers: int, family: Family, nets=None, **extra: Any
) -> TrainedModel:
    """The model of ``nets`` (default: the trainer's networks) with the problem and network
    metadata (and the ``extra`` entries), identical on every rank. Collective."""
    settings = asdict(run.trainer.settings)
    metadata = {
        **problem_metadata(grids, layers, family),
        "num_params": family.num_params,
        **{
            k: settings[k]
            for k in (
                "architecture",
                "width",
                "depth",
                "modes",
                "seed",
                "constraint",
                "loads",
                "contrast",
                "pool",
                "output",
                "ritz",
                "ritz_steps",
                "ritz_tol",
            )
        },
        "uses_corrector_data": run.trainer.settings.uses_corrector_data,
        **extra,
    }
    nets = run.trainer.nets if nets is None else nets
    return TrainedModel.gather(grids.comm, run.batch, nets, metadata)


def trained_model(
    run: TrainingRun, grids: NestedGrids, layers: int, family: Family, samples: int
) -> TrainedModel:
    """The model of a finished training run: the selected networks with the problem, network
    and training metadata (version, samples, epochs, max training time over the ranks, final
    loss parts, selected epoch). Collective."""
    trainer, history = run.trainer, run.trainer.history
    return gather_model(
        run,
        grids,
        layers,
        family,
        version=dolfinx_lod.__version__,
        samples=samples,
        epochs=trainer.epoch,
        train_seconds=grids.comm.allreduce(trainer.train_seconds, op=MPI.MAX),
        final_energy=history.energy[-1],
        final_penalty=history.penalty[-1],
        selected_epoch=trainer.best_state[2] if trainer.best_state else trainer.epoch,
    )


def train(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    settings: TrainingSettings | None = None,
    *,
    preset_name: str = "cnn",
    network: str | None = None,
    checkpoint: Path | None = None,
    progress: bool = False,
    **overrides: Any,
) -> TrainedModel:
    """Train the corrector networks of every patch N^l(T) on ``samples`` training parameters
    p_k of ``family`` (a parametrized family, or given coefficient fields:
    :func:`~dolfinx_lod.samples.sample_family`, then a coefficient-aware network) and
    return the model (the networks of the best validation energy where there is one). Writes
    nothing but the checkpoints into ``checkpoint`` if given. Collective.

    Args:
        grids: The nested grids (n, N_H, the communicator).
        layers: Oversampling layers l.
        family: The coefficient family a(x, p) or the given fields.
        samples: Training parameters K (for given fields: the first K fields).
        settings: The training settings; default: those of the preset.
        preset_name: A name of :data:`~dolfinx_lod.neural.presets.PRESETS` (without
            ``settings``).
        network: The network spec of the preset's settings (default: the preset's).
        checkpoint: Folder of the per-rank checkpoints written while training (none if None).
        progress: Show a progress bar (rank 0).
        **overrides: TrainingSettings fields on top of the preset's.

    Raises:
        InputError: The network does not fit the problem (:func:`check_network_size`).
        TrainingDiverged: The loss diverged.
    """
    if settings is None:
        settings = preset(preset_name).settings(network, **overrides)
    elif network is not None or overrides:
        raise ValueError("give either settings or network / overrides, not both")
    validate(grids.comm, lambda: check_network_size(settings, grids, layers, family))
    run = prepare_training(grids, layers, family, samples, settings)
    try:
        run.trainer.train(checkpoint=checkpoint, progress=progress)
        return trained_model(run, grids, layers, family, samples)
    finally:
        run.basis.destroy()


def _check_resume(
    grids: NestedGrids, layers: int, family: Family, samples: int, settings, folder: Path, test
) -> None:
    """Raise ``InputError`` (every rank) unless ``folder`` has checkpoints this run can resume
    (``test``: the held-out set, recorded with the problem)."""
    problem = {**training_problem(grids, layers, family, samples), **test}
    if read_checkpoint(grids.comm, folder, asdict(settings), problem) is None:
        raise InputError(
            f"`resume`: no checkpoint in {folder} (checkpoint-rank*-of{grids.comm.size}.pt and "
            f"{commit_file(folder, grids.comm.size).name}); "
            "train without `resume` to start from scratch"
        )


def evaluate_model(
    run: TrainingRun,
    model: TrainedModel,
    grids: NestedGrids,
    layers: int,
    family: Family,
    test_family: Family,
    test_p: npt.NDArray[np.float64],
) -> dict[str, Any]:
    """Basis errors of ``model`` on the training parameters and on ``test_p`` of
    ``test_family`` against the classical correctors; on ``test_p`` the LOD-ANN solution
    (f = 1) against the classical LOD solution and the fine FEM, the baselines' errors there
    and the verdict by the solution (:func:`~dolfinx_lod.neural.solutions.judge_by_solution`);
    the online time of one basis update (classical and learned). Collective."""
    learned = LearnedCorrectors(model, family, grids.r)
    train_p = run.train_params
    errors_train = compare_providers(grids, layers, family, train_p, {"learned": learned})
    providers = {"learned": learned, **baselines(run.basis, run.batch, family, train_p)}
    test = solution_errors(grids, layers, test_family, test_p, providers)
    online = {
        "classical": _online_seconds(grids, layers, test_family, None, test_p[0]),
        "learned": _online_seconds(grids, layers, test_family, learned, test_p[0]),
    }
    errors_test = test["basis"]
    learned_err = errors_test["learned"]["energy"]
    basis_beaten = {
        k: bool(learned_err < v["energy"]) for k, v in errors_test.items() if k != "learned"
    }
    return {
        "basis_error_train": errors_train["learned"]["energy"],
        "basis_error_train_nodal": errors_train["learned"]["nodal"],
        "basis_error_test": learned_err,
        "basis_error_test_nodal": errors_test["learned"]["nodal"],
        "baseline_errors_test": {k: v for k, v in errors_test.items() if k != "learned"},
        "basis_beats_baselines": basis_beaten,
        "solution_error_test": test["vs_classical"]["learned"],
        "baseline_solution_errors_test": {
            k: v for k, v in test["vs_classical"].items() if k != "learned"
        },
        "solution_error_fine_test": test["vs_fine"],
        **judge_by_solution(test),
        "online_basis_seconds": online,
        "online_speedup": online["classical"] / online["learned"],
    }


def train_and_evaluate(
    grids: NestedGrids,
    layers: int,
    family: Family,
    samples: int,
    test_samples: int,
    settings: TrainingSettings,
    out: Path | OutputSet,
    resume: bool = False,
    progress: bool = False,
    test_family: Family | None = None,
    node: list[tuple[int, int]] = (),
) -> dict[str, Any]:
    """Train the corrector networks of all patches on ``samples`` parameters, save
    ``out/model.pt`` and return the summary (basis errors on training and held-out parameters
    of ``test_family`` (default: ``family``) against the classical correctors, the baselines,
    timings, loss history). Collective.

    The checkpoints are written into ``out`` while training goes on (the resume state); the
    results (model.pt, summary.json, loss.png) are written as one set (:class:`OutputSet`):
    a failed or interrupted run leaves the earlier results of ``out`` as they were.

    Raises:
        InputError: ``resume`` without a checkpoint in ``out``, or with one written for
            other settings, another problem or another number of ranks (on every rank).
        OutputError: ``out`` cannot be written.
        TrainingDiverged: The loss diverged (a :class:`NumericalError`).
    """
    comm = grids.comm
    validate(comm, lambda: check_network_size(settings, grids, layers, family))
    test_family = family if test_family is None else test_family
    folder = out.out if isinstance(out, OutputSet) else Path(out)
    test = held_out(test_family, test_samples)
    if resume:  # before any work: a resume that cannot work fails at once
        _check_resume(grids, layers, family, samples, settings, folder, test)
    if not isinstance(out, OutputSet):
        out = OutputSet(comm, out, keep=(checkpoint_pattern(comm),), live=True)
    with out:  # a failure or an interrupt discards the new results
        run = prepare_training(grids, layers, family, samples, settings, node)
        run.trainer.problem.update(test)  # a resume with another held-out set is refused
        test_p = test_family.test_parameters(test_samples, seed=10_000 + settings.seed)
        resumed = run.trainer.load_checkpoint(folder) if resume else False
        run.trainer.train(checkpoint=folder, progress=progress)
        model = trained_model(run, grids, layers, family, samples)
        with collective(comm, OutputError):
            if comm.rank == 0:
                model.save(out.path("model.pt"))
        evaluation = evaluate_model(run, model, grids, layers, family, test_family, test_p)
        run.basis.destroy()
        history = run.trainer.history
        summary = {
            "command": "train",
            "family": family.name,
            "test_family": test_family.name,
            "n": counts_key(grids.fine_cells),
            "NH": counts_key(grids.coarse_cells),
            "domain": [list(map(float, c)) for c in grids.domain],
            "neumann": sorted(grids.neumann),
            "l": layers,
            "ranks": comm.size,
            "samples": samples,
            "test_samples": test_samples,
            "settings": asdict(settings),
            "architecture": settings.architecture,
            "uses_corrector_data": settings.uses_corrector_data,
            "resumed": resumed,
            **evaluation,
            "train_seconds": model.metadata["train_seconds"],
            "export_seconds": run.export_seconds,
            "epochs": run.trainer.epoch,
            "selected_epoch": model.metadata["selected_epoch"],
            "loss_history": asdict(history),
            "files": {"model": "model.pt", "loss_figure": "loss.png"},
        }
        with collective(comm, OutputError):
            if comm.rank == 0:
                plot_loss(out.path("loss.png"), history)
                write_json(out.path("summary.json"), summary)
        out.commit()
        return summary

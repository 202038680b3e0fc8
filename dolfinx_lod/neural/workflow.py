"""Offline phase of LOD-ANN end to end: export, train, save, evaluate against the baselines."""

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
from dolfinx_lod.coefficients import Family, SampleFamily
from dolfinx_lod.grids import NestedGrids, corner_bits, lattice_index, lattice_keys
from dolfinx_lod.io import OutputSet, write_json
from dolfinx_lod.neural.export import PatchBatch, export_patches
from dolfinx_lod.neural.provider import (
    FixedCorrectors,
    LearnedCorrectors,
    NearestCorrectors,
    TrainedModel,
    compare_providers,
    problem_metadata,
    scale_parameters,
)
from dolfinx_lod.neural.training import DeepRitzTrainer, TrainingSettings, read_checkpoint
from dolfinx_lod.parallel import InputError, OutputError, collective, validate


def checkpoints(comm: MPI.Comm) -> str:
    """The checkpoint files of a run on ``comm`` in a training folder (the resume state,
    carried into each result set; checkpoints of other rank counts are not)."""
    return f"checkpoint-rank*-of{comm.size}.pt"


def parse_network(spec: str) -> dict[str, Any]:
    """``cnn:WxD`` (coefficient-aware CNN, W channels, D convolutions), ``mlp:WxD`` (paper
    MLP, width W, depth D) or ``reduced:Q:WxD`` (Q patch modes) -> TrainingSettings fields."""
    parts = spec.split(":")
    try:
        if parts[0] in ("mlp", "cnn") and len(parts) == 2:
            w, d = parts[1].split("x")
            return {"architecture": parts[0], "width": int(w), "depth": int(d)}
        if parts[0] == "reduced" and len(parts) == 3:
            w, d = parts[2].split("x")
            return {
                "architecture": "reduced",
                "modes": int(parts[1]),
                "width": int(w),
                "depth": int(d),
            }
    except ValueError:
        pass
    raise ValueError(
        "--network must be 'cnn:WIDTHxDEPTH', 'mlp:WIDTHxDEPTH' or 'reduced:MODES:WIDTHxDEPTH', "
        f"got {spec!r}"
    )


def patch_dimension(grids: NestedGrids, layers: int) -> int:
    """Interior fine vertices of the largest patch N^l(T): an upper bound of the number of
    independent corrector values, so of useful patch modes Q."""
    w = min(2 * layers + 1, grids.coarse)
    return (w * grids.r - 1) ** grids.dim


def check_network_size(
    settings: TrainingSettings, grids: NestedGrids, layers: int, family: Family
) -> None:
    """Raise ``InputError`` if the reduced networks ask for more patch modes than a patch has
    dimensions, or if networks conditioned on p are to be trained on given fields (their
    index is no parameter). Rank-local (the same result on every rank)."""
    if isinstance(family, SampleFamily) and settings.architecture != "cnn":
        raise InputError(
            f"--coefficients: the {settings.architecture!r} networks are conditioned on the "
            "family parameter p, which given fields do not have; use --network cnn:WxD or "
            "--family"
        )
    dim = patch_dimension(grids, layers)
    if settings.architecture == "reduced" and settings.modes > dim:
        raise InputError(
            f"--network reduced:Q:...: Q ({settings.modes}) patch modes exceed the patch "
            f"dimension {dim} (interior fine vertices of the largest patch for n = "
            f"{grids.fine}, NH = {grids.coarse}, l = {layers}); allowed: 1 <= Q <= {dim}"
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
            for k in ("architecture", "width", "depth", "modes", "seed", "constraint")
        },
        "uses_corrector_data": run.trainer.settings.uses_corrector_data,
        **extra,
    }
    nets = run.trainer.nets if nets is None else nets
    return TrainedModel.gather(grids.comm, run.batch, nets, metadata)


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
    if resume:  # before any work: a resume that cannot work fails at once
        problem = training_problem(grids, layers, family, samples)
        if read_checkpoint(comm, folder, asdict(settings), problem) is None:
            raise InputError(
                f"--resume: no checkpoint in {folder} (checkpoint-rank*-of{comm.size}.pt); "
                "train without --resume to start from scratch"
            )
    if not isinstance(out, OutputSet):
        out = OutputSet(comm, out, keep=(checkpoints(comm),), live=True)
    output, out = out, folder
    with output:  # a failure or an interrupt discards the new results
        run = prepare_training(grids, layers, family, samples, settings, node)
        basis, batch, train_p, trainer = run.basis, run.batch, run.train_params, run.trainer
        test_p = test_family.test_parameters(test_samples, seed=10_000 + settings.seed)
        resumed = trainer.load_checkpoint(out) if resume else False
        trainer.train(checkpoint=out, progress=progress)
        history = trainer.history
        train_seconds = comm.allreduce(trainer.train_seconds, op=MPI.MAX)
        selected = trainer.best_state[2] if trainer.best_state else trainer.epoch
        model = gather_model(
            run,
            grids,
            layers,
            family,
            version=dolfinx_lod.__version__,
            samples=samples,
            epochs=trainer.epoch,
            train_seconds=train_seconds,
            final_energy=history.energy[-1],
            final_penalty=history.penalty[-1],
            selected_epoch=selected,
        )
        with collective(comm, OutputError):
            if comm.rank == 0:
                model.save(output.path("model.pt"))
        learned = LearnedCorrectors(model, family, grids.r)
        errors_train = compare_providers(grids, layers, family, train_p, {"learned": learned})
        providers = {"learned": learned, **baselines(basis, batch, family, train_p)}
        errors_test = compare_providers(grids, layers, test_family, test_p, providers)
        online = {
            "classical": _online_seconds(grids, layers, test_family, None, test_p[0]),
            "learned": _online_seconds(grids, layers, test_family, learned, test_p[0]),
        }
        basis.destroy()
        learned_err = errors_test["learned"]["energy"]
        beaten = {
            k: bool(learned_err < v["energy"]) for k, v in errors_test.items() if k != "learned"
        }
        summary = {
            "command": "train",
            "family": family.name,
            "test_family": test_family.name,
            "n": grids.fine,
            "NH": grids.coarse,
            "l": layers,
            "ranks": comm.size,
            "samples": samples,
            "test_samples": test_samples,
            "settings": asdict(settings),
            "architecture": settings.architecture,
            "uses_corrector_data": settings.uses_corrector_data,
            "resumed": resumed,
            "basis_error_train": errors_train["learned"]["energy"],
            "basis_error_train_nodal": errors_train["learned"]["nodal"],
            "basis_error_test": learned_err,
            "basis_error_test_nodal": errors_test["learned"]["nodal"],
            "baseline_errors_test": {k: v for k, v in errors_test.items() if k != "learned"},
            "beats_baselines": beaten,
            "note": (
                "the learned correctors beat every baseline"
                if all(beaten.values())
                else "the learned correctors do NOT beat every baseline: "
                + ", ".join(k for k, v in beaten.items() if not v)
            ),
            "train_seconds": train_seconds,
            "export_seconds": run.export_seconds,
            "epochs": trainer.epoch,
            "selected_epoch": selected,
            "online_basis_seconds": online,
            "online_speedup": online["classical"] / online["learned"],
            "loss_history": asdict(history),
            "files": {"model": "model.pt", "loss_figure": "loss.png"},
        }
        with collective(comm, OutputError):
            if comm.rank == 0:
                plot_loss(output.path("loss.png"), history)
                write_json(output.path("summary.json"), summary)
        output.commit()
        return summary


def plot_loss(path: Path, history) -> None:
    """Loss parts over the epochs (paper Fig. 3): |energy - min energy| and the penalty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dolfinx_lod.io import write_atomic

    epoch = np.array(history.epoch)
    ritz = np.array(history.phase) == "ritz"
    fig, ax = plt.subplots(figsize=(6, 4))
    if (~ritz).any():
        ax.semilogy(epoch[~ritz], np.array(history.energy)[~ritz], label="warm start (supervised)")
    if ritz.any():
        energy = np.array(history.energy)[ritz]
        ax.semilogy(epoch[ritz], energy - energy.min() + 1e-12, label="energy - min energy")
        ax.semilogy(epoch[ritz], np.array(history.penalty)[ritz] + 1e-16, label="penalty")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss part")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def plot_node_loss(path: Path, history, node: str) -> None:
    """The loss parts of the correction of one node's basis function over the epochs, log-log
    (paper Fig. 3): left the energy (14) (shifted by its minimum, it is negative), right the
    interpolation penalty (16) (omitted when it is zero: the exact projection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dolfinx_lod.io import write_atomic

    ritz = np.array(history.phase) == "ritz"
    epoch = np.array(history.epoch)[ritz]
    energy = np.array(history.node_energy)
    penalty = np.array(history.node_penalty)
    panels = [("energy loss - min", energy - energy.min() + 1e-12)]
    if penalty.any():
        panels.append(("interpolation loss (16)", penalty + 1e-16))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        ax.loglog(epoch, values, lw=1.0)
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}, node {node}")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)

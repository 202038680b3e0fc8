"""Cached LOD-ANN training of the paper's examples: a model folder keyed by the settings."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mpi4py import MPI

from dolfinx_lod.coefficients import Family
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.io import OutputSet
from dolfinx_lod.neural.checkpoints import RESUMABLE_SETTINGS, checkpoint_pattern, read_checkpoint
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.provider import FORMAT, TrainedModel
from dolfinx_lod.neural.workflow import (
    node_networks,
    train_and_evaluate,
    training_problem,
)
from dolfinx_lod.parallel import InputError, collective
from dolfinx_lod.progress import interactive

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

"""Training checkpoints: one file per rank, the format tag and the checks a resume makes
(same rank count, same settings but :data:`RESUMABLE_SETTINGS`, same problem)."""

from __future__ import annotations

from pathlib import Path

import torch
from mpi4py import MPI

from dolfinx_lod.io import write_atomic
from dolfinx_lod.parallel import InputError, OutputError, brief, collective, validate

#: Format tag of the training checkpoints.
#: 3: the penalty (16) with mu squared, normalized by N_s N_H^l.
CHECKPOINT_FORMAT = "dolfinx_lod.checkpoint/3"
#: Settings that may differ between a checkpoint and the run that resumes it (they decide how
#: long training goes on and where, not the path it takes).
RESUMABLE_SETTINGS = ("epochs", "patience", "checkpoint_every", "device", "compile")


def checkpoint_file(folder: Path, rank: int, size: int) -> Path:
    """The checkpoint of ``rank`` of a run on ``size`` ranks in ``folder``."""
    return Path(folder) / f"checkpoint-rank{rank}-of{size}.pt"


def checkpoint_pattern(comm: MPI.Comm) -> str:
    """The checkpoint files of a run on ``comm`` in a training folder (the resume state,
    carried into each result set; checkpoints of other rank counts are not)."""
    return f"checkpoint-rank*-of{comm.size}.pt"


def write_checkpoint(comm: MPI.Comm, folder: Path, state: dict) -> None:
    """Write this rank's training ``state`` (tagged with :data:`CHECKPOINT_FORMAT` and the rank
    count) atomically. Collective: a rank that cannot write stops them all."""
    state = {"format": CHECKPOINT_FORMAT, "ranks": comm.size, **state}
    path = checkpoint_file(folder, comm.rank, comm.size)
    with collective(comm, OutputError):
        write_atomic(path, lambda f: torch.save(state, f))


def _differences(found: dict, expected: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """'key = found (here expected)' for every key whose values differ."""
    keys = [k for k in {**found, **expected} if k not in skip]
    return [
        f"{k} = {found.get(k)!r} (here {expected.get(k)!r})"
        for k in keys
        if found.get(k) != expected.get(k)
    ]


def read_checkpoint(
    comm: MPI.Comm, folder: Path, settings: dict, problem: dict | None = None
) -> dict | None:
    """This rank's checkpoint in ``folder``, checked against the run that wants to resume it
    (``settings`` as a dict, ``problem`` metadata); None if no rank has one. Collective.

    Raises:
        InputError: On every rank, naming what differs: checkpoints of another rank count,
            files that are not dolfinx_lod checkpoints, other settings (but
            :data:`RESUMABLE_SETTINGS`) or another problem.
    """
    folder = Path(folder)
    path = checkpoint_file(folder, comm.rank, comm.size)
    found = comm.allgather(path.exists())
    if not any(found):
        others = sorted(p.name for p in folder.glob("checkpoint-rank0-of*.pt"))
        if others:
            counts = [n.removeprefix("checkpoint-rank0-of").removesuffix(".pt") for n in others]
            raise InputError(
                f"the checkpoints in {folder} were written by {' or '.join(counts)} rank(s), "
                f"not {comm.size}: resume with the same number of ranks (mpirun -n "
                f"{counts[0]})"
            )
        return None
    if not all(found):
        raise InputError(
            f"checkpoints in {folder} are incomplete for {comm.size} ranks (ranks "
            f"{[r for r, f in enumerate(found) if not f]} have none)"
        )
    loaded: list[dict] = []

    def check() -> None:  # on every rank, raising together (validate)
        try:
            state = torch.load(path, weights_only=True)
        except Exception as e:
            raise InputError(f"not a dolfinx_lod checkpoint: {path} ({brief(e)})") from e
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(
                f"not a dolfinx_lod checkpoint: {path} (format {CHECKPOINT_FORMAT} expected)"
            )
        differ = _differences(state["settings"], settings, RESUMABLE_SETTINGS)
        differ += _differences(state["problem"], problem or {})
        if differ:
            raise InputError(
                f"cannot resume from {path}: it was written for {', '.join(differ)}; resume "
                f"with the same settings (only {', '.join(RESUMABLE_SETTINGS)} may change) or "
                "train without --resume"
            )
        loaded.append(state)

    validate(comm, check)
    return loaded[0]

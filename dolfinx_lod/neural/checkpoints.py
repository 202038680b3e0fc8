"""Training checkpoints: one set per checkpointed epoch (one file per rank, then a commit
marker naming the epoch), the format tag and the checks a resume makes (one complete set of
one epoch, same rank count, same settings but :data:`RESUMABLE_SETTINGS`, same problem)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mpi4py import MPI

from dolfinx_lod.io import write_atomic, write_json
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


def commit_file(folder: Path, size: int) -> Path:
    """The commit marker of the checkpoint set of a run on ``size`` ranks in ``folder``."""
    return Path(folder) / f"checkpoint-of{size}.json"


def checkpoint_pattern(comm: MPI.Comm) -> str:
    """The checkpoint files and commit marker of a run on ``comm`` in a training folder (the
    resume state, carried into each result set; those of other rank counts are not)."""
    return f"checkpoint-*of{comm.size}.*"


def write_checkpoint(comm: MPI.Comm, folder: Path, state: dict) -> None:
    """Write this rank's training ``state`` (tagged with :data:`CHECKPOINT_FORMAT` and the rank
    count) atomically, then, once every rank has written its part, the commit marker of the
    set (rank 0). Collective: a rank that cannot write stops them all; an interrupt between
    the parts leaves a set that :func:`read_checkpoint` refuses rather than resumes."""
    state = {"format": CHECKPOINT_FORMAT, "ranks": comm.size, **state}
    path = checkpoint_file(folder, comm.rank, comm.size)
    marker = {"format": CHECKPOINT_FORMAT, "ranks": comm.size, "epoch": state["epoch"]}
    written = []
    try:
        with collective(comm, OutputError):
            write_atomic(path, lambda f: torch.save(state, f))
            written.append(path)
    except KeyboardInterrupt:  # after every part was written (a deferred signal): commit first
        if comm.rank == 0 and written:
            write_json(commit_file(folder, comm.size), marker)
        raise
    with collective(comm, OutputError):
        if comm.rank == 0:
            write_json(commit_file(folder, comm.size), marker)


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
                "train without `resume`"
            )
        loaded.append(state)

    validate(comm, check)
    _check_one_set(comm, folder, loaded[0]["epoch"])
    return loaded[0]


def _check_one_set(comm: MPI.Comm, folder: Path, epoch: int) -> None:
    """Raise ``InputError`` on every rank unless all ranks' parts are of one epoch and that
    set was committed (an interrupted write leaves the ranks' parts epochs apart)."""
    epochs = comm.allgather(epoch)
    committed: list = []

    def read() -> None:
        if comm.rank == 0:
            try:
                committed.append(json.loads(commit_file(folder, comm.size).read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                committed.append(None)

    validate(comm, read)
    committed = comm.bcast(committed[0] if committed else None, root=0)
    if len(set(epochs)) > 1 or committed != epochs[0]:
        parts = ", ".join(f"rank {r}: epoch {e}" for r, e in enumerate(epochs))
        raise InputError(
            f"the checkpoints in {folder} are not one committed set ({parts}; committed: "
            f"{'none' if committed is None else f'epoch {committed}'}): a run was stopped "
            "while writing them; train without `resume`"
        )

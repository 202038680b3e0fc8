"""Faults end cleanly on every rank: the collective error path, input checks before any work,
results written as a set, exact training resume, degenerate but valid input (issue 15).

The tests call the library and ``dolfinx_lod.cli.main`` in-process; those marked ``mpi`` also
run under ``mpirun -n 2 python -m mpi4py -m pytest -m mpi`` (faults on one rank only).
"""

import json
import os
import pickle
import re
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  (imported before any VTK rendering: later it crashes)
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod import cli
from dolfinx_lod.basis import MultiscaleBasis
from dolfinx_lod.coefficients import cont_family
from dolfinx_lod.io import OutputSet
from dolfinx_lod.neural.checkpoints import checkpoint_file
from dolfinx_lod.neural.presets import TrainingSettings
from dolfinx_lod.neural.provider import TrainedModel
from dolfinx_lod.neural.trainer import DeepRitzTrainer, TrainingDiverged
from dolfinx_lod.neural.workflow import prepare_training
from dolfinx_lod.parallel import (
    InputError,
    NumericalError,
    OutputError,
    collective,
)


class Stop(Exception):
    """An interruption raised by a test."""


def main(argv, capsys) -> tuple[int, str]:
    """Run the command line in-process: (exit code, stderr of this rank)."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def listing(folder: Path) -> dict[str, bytes]:
    """Name -> contents of the result files in ``folder`` (recursively; not the manifest)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def leftovers(folder: Path) -> list[str]:
    """Staging folders and partial files beside or inside ``folder``."""
    names = [p.name for p in folder.parent.glob(f".{folder.name}.tmp-*")]
    if folder.is_dir():
        names += [p.name for p in folder.rglob("*partial*")] + [
            p.name for p in folder.rglob(".*.tmp")
        ]
    return names


@pytest.fixture(scope="module")
def grids(comm):
    return dl.create_nested_grids(comm, 4, 16)


@pytest.fixture(scope="module")
def coefficient(tmp_path_factory, comm):
    folder = comm.bcast(tmp_path_factory.mktemp("coefficient") if comm.rank == 0 else None)
    A = np.random.default_rng(2).uniform(0.1, 1.0, (16, 16))
    if comm.rank == 0:
        np.save(folder / "A.npy", A)
        np.save(folder / "stack.npy", np.stack([A, A[::-1], A.T, A]))
    comm.Barrier()
    return folder


# -- 1. the collective error path ----------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.parametrize(
    "raised, expected",
    [
        (RuntimeError("solve failed"), NumericalError),
        (ValueError("bad value"), InputError),
        (OutputError("disk full"), OutputError),
        (KeyError("surprise"), NumericalError),
    ],
)
def test_collective_raises_on_every_rank(comm, raised, expected):
    """An exception on the last rank only ends the block with the same error on all ranks."""
    with pytest.raises(expected) as info:
        with collective(comm, NumericalError):
            if comm.rank == comm.size - 1:
                raise raised
    assert str(raised.args[0]) in str(info.value)
    assert comm.allgather(str(info.value)) == [str(info.value)] * comm.size


class ZeroOnLastRank:
    """Classical patch solves, but the last rank solves with a zero coefficient: its MUMPS
    factorization fails there only (what a 1e-320 value did before the contrast check)."""

    needs_coefficient = True

    def __init__(self, basis: MultiscaleBasis):
        self.classical, self.comm = basis.patch_problems, basis.grids.comm

    def correctors(self, patches, a_patches, p=None, progress=False):
        if self.comm.rank == self.comm.size - 1:
            a_patches = [np.zeros_like(a) for a in a_patches]
        return self.classical.correctors(patches, a_patches, p, progress)


@pytest.mark.mpi
def test_patch_factorization_failing_on_one_rank(grids, comm):
    basis = MultiscaleBasis(grids, 1)
    basis.provider = ZeroOnLastRank(basis)
    with pytest.raises(NumericalError, match=rf"coarse cell T = \d+ .* on rank {comm.size - 1}"):
        basis.update(np.ones((16, 16)))
    # The failed solver recovers: the classical provider works again afterwards.
    basis.provider = basis.patch_problems
    basis.update(np.ones((16, 16)))
    assert basis.num_recomputed == 16
    basis.destroy()


# -- 2. input validated before any work --------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.parametrize(
    "A, message",
    [
        (np.ones((16, 16), dtype=complex), "complex"),
        (np.zeros((16, 16), dtype="datetime64[s]"), "datetime"),
        (np.full((16, 16), "1.0"), "string"),
        (np.ones((16, 16), dtype=bool), "boolean"),
        (np.zeros((16, 16), dtype=[("a", "f8")]), "structured"),
    ],
)
def test_coefficient_dtype(grids, A, message):
    with pytest.raises(InputError, match=f"real floating-point or integer values.*{message}"):
        dl.solve_elliptic(grids, A, 1)


@pytest.mark.mpi
@pytest.mark.parametrize("small, contrast", [(1e-320, "1e320"), (1e-15, "1e15")])
def test_coefficient_contrast(grids, comm, small, contrast):
    """A value whose ratio to the maximum underflows is rejected, also when it lies on one
    rank only and the maximum on another (the range is global)."""

    def a(x):
        values = np.ones(x.shape[1])
        if comm.rank == comm.size - 1:
            values[0] = small
        return values

    with pytest.raises(InputError, match=f"contrast max/min = {contrast}"):
        dl.solve_elliptic(grids, a, 1)


@pytest.mark.mpi
def test_one_fine_cell_per_coarse_cell_is_refused(comm):
    g = dl.create_nested_grids(comm, 8, 8)
    with pytest.raises(InputError, match=r"r = n / NH >= 2.*allowed: NH in \[1, 2, 4\]"):
        MultiscaleBasis(g, 1)


@pytest.mark.mpi
@pytest.mark.parametrize(
    "content, message",
    [
        ("complex", "complex"),
        ("empty", "not a .npy file"),
        ("text", "not a .npy file"),
        ("pickle", "not a .npy file"),
        ("npz", "a .npz archive, not a .npy file"),
        ("structured", "structured"),
        ("zero-size", "must be 2D of shape (n_y, n_x); got shape (0, 0)"),
    ],
)
def test_cli_bad_coefficient_file(tmp_dir, comm, capsys, content, message):
    path = tmp_dir / "A.npy"
    if comm.rank == 0:
        if content == "complex":
            np.save(path, np.ones((16, 16), dtype=complex))
        elif content == "empty":
            path.write_bytes(b"")
        elif content == "text":
            path.write_text("1 2 3\n4 5 6\n")
        elif content == "pickle":
            path.write_bytes(pickle.dumps(np.ones((16, 16))))
        elif content == "npz":
            np.savez(tmp_dir / "A.npz", a=np.ones((16, 16)))
            os.replace(tmp_dir / "A.npz", path)
        elif content == "structured":
            np.save(path, np.zeros((16, 16), dtype=[("a", "f8"), ("b", "i4")]))
        else:
            np.save(path, np.ones((0, 0)))
    comm.Barrier()
    args = ["elliptic", "--coefficient", path, "--coarse", 4, "--layers", 1]
    code, err = main([*args, "--out", tmp_dir / "out"], capsys)
    assert code == 2
    if comm.rank == 0:
        assert err.startswith("dolfinx-lod elliptic: error: --coefficient") and message in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert "pickle" not in err  # never a hint to load it unsafely
    assert not (tmp_dir / "out").exists()


@pytest.mark.mpi
def test_cli_coarse_equal_to_n(coefficient, tmp_dir, capsys):
    A = coefficient / "A.npy"
    code, err = main(
        ["elliptic", "--coefficient", A, "--coarse", 16, "--layers", 1, "--out", tmp_dir], capsys
    )
    assert code == 2 and (MPI.COMM_WORLD.rank or "NH (16) must be at most n / 2 = 8" in err)


@pytest.mark.mpi
def test_cli_stack_validated_before_the_first_step(coefficient, tmp_dir, comm, capsys):
    """A NaN at the last step stops the run before any step; earlier results stay."""
    out = tmp_dir / "out"
    stack = np.load(coefficient / "stack.npy")
    stack[3, 5, 7] = np.nan
    with OutputSet(comm, out) as earlier:  # an earlier result set
        if comm.rank == 0:
            np.save(tmp_dir / "nan.npy", stack)
            earlier.path("summary.json").write_text('{"earlier": true}')
            earlier.path("snapshot_step0001.png").write_bytes(b"earlier")
        earlier.commit()
    before = listing(out)
    flags = ["--coarse", 4, "--layers", 1, "--T", 1, "--steps", 4, "--out", out]
    code, err = main(["parabolic", "--coefficients", tmp_dir / "nan.npy", *flags], capsys)
    assert code == 2 and (comm.rank or "--coefficients step 4 must be finite" in err)
    assert listing(out) == before and not leftovers(out)
    stack = coefficient / "stack.npy"
    for bad in ([0, 2], [5]):
        code, err = main(
            ["parabolic", "--coefficients", stack, *flags, "--snapshots", *bad], capsys
        )
        assert code == 2 and (comm.rank or "--snapshots must be steps in 1..M = 1..4" in err)
    assert listing(out) == before and not leftovers(out)


@pytest.mark.mpi
def test_cli_network_larger_than_the_patch(tmp_dir, capsys, comm):
    args = ["train", "--family", "cont", "--coarse", 4, "--fine", 16, "--layers", 1]
    args += ["--samples", 2, "--network", "reduced:1000:4x1", "--out", tmp_dir / "t"]
    code, err = main(args, capsys)
    assert code == 2 and (comm.rank or "Q (1000) patch modes exceed the patch dimension" in err)
    comm.Barrier()  # rank 0 removes the folder it created: look once every rank has returned
    assert not (tmp_dir / "t").exists()


# -- 3. results written as a set -----------------------------------------------------------------


@pytest.mark.mpi
def test_output_folder_that_cannot_be_written(tmp_dir, comm):
    if comm.rank == 0:
        (tmp_dir / "file").write_text("x")
        (tmp_dir / "mine").mkdir()
        (tmp_dir / "mine" / "notes.txt").write_text("not results")
    comm.Barrier()
    cases = [
        (tmp_dir / "file", "it exists and is not a folder"),
        (Path("/proc/dolfinx_lod_out"), "cannot create a folder in /proc"),
        (tmp_dir / "mine", "it holds notes.txt, which dolfinx_lod did not write"),
    ]
    for out, message in cases:
        with pytest.raises(OutputError, match=message):
            OutputSet(comm, out)
    assert (tmp_dir / "mine" / "notes.txt").read_text() == "not results"
    assert not leftovers(tmp_dir / "file") and not leftovers(tmp_dir / "mine")


@pytest.mark.mpi
def test_output_set_replaces_in_one_step(tmp_dir, comm):
    out = tmp_dir / "out"
    runs = [["a.txt", "summary.json"], ["summary.json", "b.txt"], ["summary.json"]]
    for run, names in enumerate(runs):
        with pytest.raises(Stop) if run == 1 else nullcontext():
            with OutputSet(comm, out) as output:
                if comm.rank == 0:
                    for name in names:
                        output.path(name).write_text(f"run {run}")
                if run == 1:  # a failure before the commit leaves the first set
                    comm.Barrier()  # raised on every rank together, as collective errors are
                    raise Stop
                output.commit()
        comm.Barrier()  # every rank has discarded the staging folder
        if run == 1:
            found = listing(out)
            ok = comm.allgather(found == {"a.txt": b"run 0", "summary.json": b"run 0"})
            assert all(ok), (comm.rank, ok, found)
    found = listing(out), leftovers(out)
    ok = comm.allgather(found == ({"summary.json": b"run 2"}, []))  # no file of run 0 left
    assert all(ok), (comm.rank, ok, found)


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with OutputSet(MPI.COMM_SELF, tmp_path / "out") as output:
            dl.io.write_json(output.path("summary.json"), {"a": 1})
            output.commit()
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out" / "summary.json").stat().st_mode & 0o777 == 0o640


def test_interrupted_elliptic_keeps_earlier_results(coefficient, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the figure is drawn: the earlier set stays complete, nothing new is left;
    a later --no-plot run replaces the whole set (no stale figure). --source 0 gives u = 0
    and relative errors 0."""
    out = tmp_path / "out"
    args = ["elliptic", "--coefficient", coefficient / "A.npy", "--coarse", 4, "--layers", 1]
    assert main([*args, "--out", out], capsys)[0] == 0
    before = listing(out)
    assert "elliptic.png" in before

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dolfinx_lod.plotting.plot_fields", interrupt)
    code, err = main([*args, "--source", 2.0, "--out", out], capsys)
    assert code == 130 and f"interrupted; the results in {out} are unchanged" in err
    assert listing(out) == before and not leftovers(out)
    assert main([*args, "--source", 0, "--no-plot", "--reference", "--out", out], capsys)[0] == 0
    names = sorted({name.split("/")[0] for name in listing(out)})
    assert names == [
        "coefficient.bp",
        "reference.npy",
        "solution.bp",
        "solution.npy",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rel_l2_error"] == summary["rel_energy_error"] == 0.0
    assert np.abs(np.load(out / "solution.npy")).max() == 0.0


@pytest.mark.mpi
def test_write_failing_on_rank_0_only(coefficient, tmp_dir, comm, capsys, monkeypatch):
    if comm.rank == 0:

        def full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("dolfinx_lod.cli.elliptic.write_npy", full)
    out = tmp_dir / "out"
    flags = ["--coarse", 4, "--layers", 1, "--no-plot", "--out", out]
    code, err = main(["elliptic", "--coefficient", coefficient / "A.npy", *flags], capsys)
    assert code == 4 and (comm.rank or "No space left on device" in err)
    assert not out.exists() and not leftovers(out)


def test_tol_without_selective_warns(coefficient, tmp_path, capsys):
    flags = ["--coarse", 4, "--layers", 1, "--T", 1, "--steps", 4, "--tol", 0.1, "--no-plot"]
    code, err = main(
        ["parabolic", "--coefficients", coefficient / "stack.npy", *flags, "--out", tmp_path],
        capsys,
    )
    assert code == 0 and "warning: --tol applies to --update selective only" in err


# -- 4. training that resumes exactly ------------------------------------------------------------


SETTINGS = dict(
    architecture="reduced",
    modes=8,
    width=8,
    depth=2,
    lr=1e-2,
    validate_every=10,
    checkpoint_every=10,
    patience=10**6,
)


@pytest.fixture(scope="module")
def training(comm):
    g = dl.create_nested_grids(comm, 4, 16)
    return g, cont_family(16)


def new_run(training, epochs: int):
    g, family = training
    return prepare_training(g, 1, family, 4, TrainingSettings(epochs=epochs, **SETTINGS))


@pytest.mark.mpi
def test_resume_equals_an_uninterrupted_run(training, tmp_dir, comm):
    straight = new_run(training, 60)
    straight.trainer.train(checkpoint=tmp_dir / "a")

    def interrupt(trainer):
        if trainer.epoch == 40:  # after the validation of epoch 40, before its checkpoint
            raise Stop

    interrupted = new_run(training, 60)
    with pytest.raises(Stop):
        interrupted.trainer.train(checkpoint=tmp_dir / "b", monitor=interrupt)
    resumed = new_run(training, 60)
    assert resumed.trainer.load_checkpoint(tmp_dir / "b")
    assert resumed.trainer.epoch == 30  # the checkpoint before the interrupt
    resumed.trainer.train(checkpoint=tmp_dir / "b")
    a, b = straight.trainer, resumed.trainer
    assert a.best_state[2] == b.best_state[2]  # the same selected epoch
    assert a.history.energy == b.history.energy and a.history.validation == b.history.validation
    for key, value in a.nets.state_dict().items():
        assert torch.equal(value, b.nets.state_dict()[key]), key
    for run in (straight, interrupted, resumed):
        run.basis.destroy()


@pytest.mark.mpi
def test_resume_checks(training, tmp_dir, comm):
    g, family = training
    run = new_run(training, 10)
    run.trainer.train(checkpoint=tmp_dir)
    other = TrainingSettings(epochs=20, **{**SETTINGS, "lr": 2e-2})
    trainer = DeepRitzTrainer(
        run.batch, run.trainer.params, other, comm, problem=run.trainer.problem
    )
    with pytest.raises(InputError, match=r"lr = 0.01 \(here 0.02\)"):
        trainer.load_checkpoint(tmp_dir)
    trainer = DeepRitzTrainer(
        run.batch,
        run.trainer.params,
        TrainingSettings(epochs=20, **SETTINGS),
        comm,
        problem={**run.trainer.problem, "samples": 5},
    )
    with pytest.raises(InputError, match=r"samples = 4 \(here 5\)"):
        trainer.load_checkpoint(tmp_dir)
    path = checkpoint_file(tmp_dir, comm.rank, comm.size)
    if comm.rank == comm.size - 1:  # a damaged checkpoint on one rank
        path.write_bytes(path.read_bytes()[:100])
    comm.Barrier()
    with pytest.raises(InputError, match="not a dolfinx_lod checkpoint"):
        run.trainer.load_checkpoint(tmp_dir)
    run.basis.destroy()


@pytest.mark.mpi
def test_divergence_at_the_first_epoch_claims_no_checkpoint(training, tmp_dir):
    run = new_run(training, 10)
    with torch.no_grad():
        run.trainer.nets.weights[0].fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="epoch 0 .*no checkpoint was written"):
        run.trainer.train(checkpoint=tmp_dir)
    assert not list(Path(tmp_dir).glob("checkpoint-*"))
    run.basis.destroy()


def test_cli_resume(tmp_path, capsys):
    """--resume continues a run exactly; resumes that cannot match fail with what differs."""
    out = tmp_path / "t"
    args = ["train", "--family", "cont", "--coarse", 4, "--fine", 16, "--layers", 1]
    args += ["--samples", 4, "--test-samples", 2, "--network", "reduced:4:8x2"]
    args += ["--checkpoint-every", 10]
    assert main([*args, "--epochs", 30, "--out", tmp_path / "straight"], capsys)[0] == 0
    assert main([*args, "--epochs", 20, "--out", out], capsys)[0] == 0
    assert main([*args, "--epochs", 30, "--out", out, "--resume"], capsys)[0] == 0
    straight, resumed = (torch.load(p / "model.pt") for p in (tmp_path / "straight", out))
    for key, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][key]), key
    assert straight["metadata"]["selected_epoch"] == resumed["metadata"]["selected_epoch"]
    assert json.loads((out / "summary.json").read_text())["resumed"] is True
    before = listing(out)
    for extra, message in [
        (["--lr", 0.02], r"lr = 0.01 \(here 0.02\)"),
        (["--samples", 5], r"samples = 4 \(here 5\)"),
        (["--fine", 32], r"n = 16 \(here 32\)"),
    ]:
        code, err = main([*args, "--epochs", 40, "--out", out, "--resume", *extra], capsys)
        assert code == 2 and "cannot resume from" in err and re.search(message, err), err
    assert listing(out) == before  # the results of the resumed run are intact
    code, err = main([*args, "--epochs", 40, "--out", tmp_path / "none", "--resume"], capsys)
    assert code == 2 and "--resume: no checkpoint in" in err
    assert not (tmp_path / "none").exists()
    # Checkpoints of 2 ranks (a 2-rank run adds them to the folder's manifest), resumed on 1.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["patterns"].append("checkpoint-rank*-of2.pt")
    (out / "manifest.json").write_text(json.dumps(manifest))
    for rank in (0, 1):
        (out / f"checkpoint-rank{rank}-of2.pt").write_bytes(b"")
    (out / "checkpoint-rank0-of1.pt").unlink()
    code, err = main([*args, "--epochs", 40, "--out", out, "--resume"], capsys)
    assert code == 2 and "written by 2 rank(s), not 1" in err
    (out / "model.pt").write_bytes(b"damaged")
    with pytest.raises(InputError, match="not a dolfinx_lod model: .*model.pt"):
        TrainedModel.load(out / "model.pt")


def test_damaged_cached_model_says_how_to_clear(tmp_path, comm=MPI.COMM_SELF):
    from dolfinx_lod.paper.cache import cached_training, load_cached_model

    g = dl.create_nested_grids(comm, 4, 16)
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(InputError, match=f"delete the folder {tmp_path} .* or pass --cache"):
        load_cached_model(tmp_path, g, 1, cont_family(16))
    settings = TrainingSettings(epochs=1, **SETTINGS)
    folder, _, _ = cached_training(g, 1, cont_family(16), 2, 1, settings, tmp_path, False)
    (folder / "summary.json").write_text("{")
    with pytest.raises(InputError, match="summary.json is damaged .* delete the folder"):
        cached_training(g, 1, cont_family(16), 2, 1, settings, tmp_path, False)

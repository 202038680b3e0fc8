"""The hostile run of issue 26: result folders the tool did not write are never deleted, no
fault hangs, exit codes as documented, valid scales of a accepted, options validated.

Tests that may hang run the command line in a subprocess with a kill timeout.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import mpirun, run_cli
from helpers import run_mpi as run
from mpi4py import MPI

import dolfinx_lod as dl
from dolfinx_lod import cli
from dolfinx_lod.cli import signals
from dolfinx_lod.io import OutputSet
from dolfinx_lod.parallel import InputError, OutputError, Terminated, check_interrupt


@pytest.fixture(scope="module")
def grids(comm):
    return dl.create_nested_grids(comm, 4, 16)


# -- scale: a = c * a0 gives the same correctors for c in [1e-12, 1e12] ------------------------


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["galerkin", "petrov-galerkin"])
def test_solutions_invariant_to_the_scale_of_a(grids, method):
    """u(c a0) = u(a0) / c: the patch, coarse and fine solves see only the relative a (MUMPS
    failed with INFOG(1) = -9 for max(a) <= 1e-7 before)."""
    a0 = np.random.default_rng(1).uniform(0.1, 1.0, (16, 16))
    reference = method == "galerkin"
    base = dl.solve_elliptic(grids, a0, 2, method=method, reference=reference)
    for c in (1e-12, 3.7e-9, 1e-7, 1e12):
        sol = dl.solve_elliptic(grids, c * a0, 2, method=method, reference=reference)
        u, u0 = sol.u_ms.x.array * c, base.u_ms.x.array
        assert np.abs(u - u0).max() <= 1e-12 * np.abs(u0).max(), c
        if reference:  # the fine FEM within its CG tolerance (rtol 1e-12)
            uh, uh0 = sol.u_h.x.array * c, base.u_h.x.array
            assert np.abs(uh - uh0).max() <= 1e-9 * np.abs(uh0).max(), c


@pytest.mark.mpi
def test_contrast_at_small_absolute_scale(grids):
    """a in {1e-7, 1e7} (contrast 1e14 at absolute scale 1e-7) solves."""
    A = np.where(np.random.default_rng(0).random((16, 16)) < 0.5, 1e-7, 1e7)
    sol = dl.solve_elliptic(grids, A, 2)
    assert np.isfinite(sol.u_ms.x.array).all() and np.abs(sol.u_ms.x.array).max() > 0


# -- 1. ownership of result folders ------------------------------------------------------------


def files(folder: Path) -> dict[str, bytes]:
    """Relative path -> contents of every file below ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def write_set(out: Path, names=("summary.json", "model.pt"), inputs=(), **kwargs) -> None:
    """One result set of ``names`` written through OutputSet (1 rank)."""
    with OutputSet(MPI.COMM_SELF, out, inputs=inputs, **kwargs) as output:
        for name in names:
            output.path(name).parent.mkdir(parents=True, exist_ok=True)
            output.path(name).write_text(name)
        output.commit()


def test_a_folder_the_tool_did_not_write_is_never_replaced(tmp_path):
    """A user's folder holding a model.pt (thesis.tex, data/): refused, nothing deleted."""
    user = tmp_path / "userdir"
    (user / "data").mkdir(parents=True)
    for name in ("model.pt", "summary.json", "thesis.tex", "data/x.csv"):
        (user / name).write_text(name)
    before = files(user)
    with pytest.raises(OutputError, match="it holds data/, which dolfinx_lod did not write"):
        write_set(user)
    assert files(user) == before and not list(tmp_path.glob(".userdir.tmp-*"))


def test_replacing_keeps_foreign_files(tmp_path):
    """A tool-written folder with a user's file added: refused, naming the file; a folder with
    only the manifest's files is replaced, the manifest lists what was written."""
    out = tmp_path / "out"
    write_set(out, ("summary.json", "solution.bp/data.0"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == ["solution.bp/", "solution.bp/data.0", "summary.json"]
    write_set(out, ("summary.json",))
    assert sorted(files(out)) == ["manifest.json", "summary.json"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="it holds notes.txt, which dolfinx_lod did not"):
        write_set(out)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_file_appearing_during_the_run_is_kept(tmp_path):
    """A foreign file added while the run goes on: the commit keeps both sets."""
    out = tmp_path / "out"
    write_set(out)
    with OutputSet(MPI.COMM_SELF, out) as output:
        output.path("summary.json").write_text("new")
        (out / "late.txt").write_text("mine")
        with pytest.raises(OutputError, match="late.txt appeared there during the run"):
            output.commit()
    assert (out / "late.txt").read_text() == "mine" and (out / "summary.json").exists()
    assert output.path("summary.json").read_text() == "new"  # the new set is kept


@pytest.mark.parametrize("where", ["inside", "the folder", "symlinked"])
def test_out_holding_an_input_is_refused(tmp_path, where):
    """--model mcopy/model.pt --out mcopy: a tool-written folder holding an input of the
    run is refused before any work (it would delete the input)."""
    out = tmp_path / "mcopy"
    write_set(out)
    model = out / "model.pt"
    inputs = {"inside": model, "the folder": out}.get(where)
    if where == "symlinked":  # the input named through a link outside
        inputs = tmp_path / "link.pt"
        inputs.symlink_to(model)
    before = files(out)
    with pytest.raises(OutputError, match="an input of this run"):
        write_set(out, inputs=[inputs])
    assert files(out) == before


def test_out_is_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for out, message in ((".", "the working folder"), ("..", "a folder above the working")):
        with pytest.raises(OutputError, match=f"cannot write `out` {out}: it is {message}"):
            write_set(Path(out))
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_symlinked_out_is_followed(tmp_path):
    """A link to a folder: the results go into its target, the link stays; a dangling link
    is refused naming the option and the link (not the staging folder)."""
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    link.symlink_to(target)
    write_set(link)
    assert link.is_symlink() and (target / "summary.json").exists()
    write_set(link)  # replaced again: still the link
    assert link.is_symlink() and sorted(files(target))[0] == "manifest.json"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(OutputError, match=f"`out` {dangling}: it is a symbolic link to"):
        write_set(dangling)
    assert dangling.is_symlink() and not (tmp_path / "missing").exists()


def test_over_long_out(tmp_path):
    """A 255-byte name works (the staging folder's name is shortened); a longer one is refused
    naming the option before any work."""
    write_set(tmp_path / ("x" * 255))
    long = tmp_path / ("y" * 300)
    with pytest.raises(OutputError, match=f"`out` {long}: the name is too long .300 bytes"):
        write_set(long)


def test_live_folder_owns_its_checkpoints(tmp_path):
    """A training folder (live): checkpoints and a partial checkpoint write left by an
    interrupted run count as the tool's; a user's file does not."""
    out = tmp_path / "train"
    keep = ("checkpoint-rank*-of1.pt",)
    with OutputSet(MPI.COMM_SELF, out, keep=keep, live=True):
        (out / "checkpoint-rank0-of1.pt").write_text("epoch 3")
        (out / ".checkpoint-rank0-of1.pt.abc.tmp").write_text("")
    write_set(out, keep=keep, live=True)  # the interrupted run's files are replaced
    assert sorted(files(out)) == [
        "checkpoint-rank0-of1.pt",
        "manifest.json",
        "model.pt",
        "summary.json",
    ]
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match="thesis.tex"):
        write_set(out, keep=keep, live=True)


def main(argv, capsys) -> tuple[int, str]:
    """Run the command line in-process: (exit code, stderr of this rank)."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def a_folder(folder: Path, **names: str) -> Path:
    """``folder`` with a coefficient A.npy (16 x 16), a stack.npy and text files ``names``."""
    folder.mkdir(parents=True, exist_ok=True)
    A = np.random.default_rng(4).uniform(0.1, 1.0, (16, 16))
    np.save(folder / "A.npy", A)
    np.save(folder / "stack.npy", np.stack([A, A.T]))
    for name, text in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


SIZES = ["--coarse", 4, "--layers", 1]


def test_cli_out_holding_its_coefficient(tmp_path, capsys):
    """elliptic --coefficient mixed/A.npy --out mixed deleted A.npy and mydata/ before."""
    mixed = a_folder(tmp_path / "mixed", **{"mydata/x.txt": "mine"})
    before = files(mixed)
    code, err = main(["elliptic", "--coefficient", mixed / "A.npy", *SIZES, "--out", mixed], capsys)
    assert code == 4 and "A.npy, an input of this run" in err
    assert files(mixed) == before and not list(tmp_path.glob(".mixed.tmp-*"))


@pytest.mark.parametrize("option", ["--model", "--operators"])
def test_cli_out_holding_its_model(tmp_path, capsys, option):
    """--model mcopy/model.pt --out mcopy (a folder the tool wrote, copied with its manifest)
    deleted the model it read; --operators likewise. Refused before the model is read."""
    name = "model.pt" if option == "--model" else "operators.pt"
    copy = tmp_path / "mcopy"
    write_set(copy, (name, "summary.json", "checkpoint-rank0-of1.pt"))
    before = files(copy)
    stack = a_folder(tmp_path / "inputs") / "stack.npy"
    args = ["--coefficients", stack, *SIZES, "--T", 1, "--steps", 2]
    args += ["--method", "petrov-galerkin", option, copy / name, "--out", copy]
    code, err = main(["parabolic", *args], capsys)
    assert code == 4 and f"{name}, an input of this run" in err
    assert files(copy) == before


def test_cli_out_is_the_working_folder(tmp_path, capsys, monkeypatch):
    work = a_folder(tmp_path / "work", **{"thesis.tex": "mine"})
    monkeypatch.chdir(work)
    before = files(work)
    code, err = main(["elliptic", "--coefficient", "A.npy", *SIZES, "--out", "."], capsys)
    assert code == 4 and "--out .: it is the working folder" in err
    assert files(work) == before


# -- 5. validation -----------------------------------------------------------------------------


@pytest.mark.mpi
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domain": "rank"}, "given different domains"),
        ({"neumann": "rank"}, "given different Neumann sides"),
    ],
)
def test_ranks_given_different_grids(comm, kwargs, message):
    """Valid but different grids on the last rank: refused on every rank (MPI runs)."""
    last = comm.rank == comm.size - 1 and comm.size > 1
    domain = ((0.0, 0.0), (2.0 if last else 1.0, 1.0))
    neumann = ("left",) if last else ()
    args = {"domain": domain} if "domain" in kwargs else {"neumann": neumann}
    if comm.size == 1:
        dl.create_nested_grids(comm, 4, 16, **args)  # nothing to compare
        return
    with pytest.raises(InputError, match=message):
        dl.create_nested_grids(comm, 4, 16, **args)


@pytest.mark.mpi
def test_ranks_given_different_coefficients(grids, comm):
    A = np.full((16, 16), 1.0 + (comm.rank == comm.size - 1))
    if comm.size == 1:
        return
    with pytest.raises(InputError, match="given different coefficient a arrays"):
        dl.solve_elliptic(grids, A, 1)


@pytest.mark.parametrize(
    "f, message",
    [
        (np.ones(7), "source f array must be 2D .*got shape .7,."),
        ("1", "source f must hold real .*string"),
        (True, "source f must be a number .*got bool"),
    ],
)
def test_source_named(grids, f, message):
    with pytest.raises(InputError, match=message):
        dl.solve_elliptic(grids, np.ones((16, 16)), 1, f=f)


def test_nan_parameter_refused():
    family = dl.coefficients.family("cont", 16)
    with pytest.raises(ValueError, match="parameter p of family 'cont'"):
        family.check(np.full(family.num_params, np.nan))


TRAIN = ["train", "--family", "cont", "--fine", 16, *SIZES, "--samples", 2]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--epochs", 0, "--epochs must be >= 1, got 0"),
        ("--lr", 0, "--lr must be > 0, got 0.0"),
        ("--lr", "nan", "--lr must be > 0, got nan"),
        ("--lr-decay", 0, r"--lr-decay must be in \(0, 1\], got 0.0"),
        ("--lr-step", -1, "--lr-step must be >= 1, got -1"),
        ("--seed", -1, "--seed must be >= 0, got -1"),
        ("--test-samples", 0, "--test-samples must be >= 1, got 0"),
    ],
)
def test_cli_counts_and_rates_out_of_range(tmp_path, capsys, option, value, message):
    """Zero or negative counts and rates: exit 2 naming the option (were replaced by the
    defaults), before --out is touched."""
    code, err = main([*TRAIN, option, value, "--out", tmp_path / "out"], capsys)
    assert code == 2 and re.search(f"error: {message}$", err.strip()), err
    assert not (tmp_path / "out").exists()


def test_cli_fine_with_a_coefficient_file(tmp_path, capsys):
    """--fine that does not match --coefficient: refused; matching: a one-line note."""
    A = a_folder(tmp_path / "in") / "A.npy"
    args = ["elliptic", "--coefficient", A, *SIZES, "--no-plot"]
    code, err = main([*args, "--fine", 64, "--out", tmp_path / "a"], capsys)
    assert code == 2 and "--fine 64 does not match --coefficient" in err and "16x16" in err
    code, err = main([*args, "--fine", 16, "--out", tmp_path / "b"], capsys)
    assert code == 0 and err.count("warning: --fine 16 is the size of --coefficient") == 1


def test_cli_input_files_named(tmp_path, capsys):
    """A missing --model, a folder as --coefficient, NaN in --params: exit 2 naming the option."""
    inputs = a_folder(tmp_path / "in")
    missing = tmp_path / "missing" / "model.pt"
    code, err = main(
        ["elliptic", "--coefficient", inputs / "A.npy", *SIZES, "--model", missing, "--out",
         tmp_path / "out"], capsys)  # fmt: skip
    assert code == 2 and f"error: --model {missing}: No such file or directory" in err
    code, err = main(["elliptic", "--coefficient", inputs, *SIZES, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--coefficient" in err and "not a regular file (a folder)" in err
    np.save(inputs / "p.npy", np.array([0.5, np.nan]))
    args = ["parabolic", "--coefficients", inputs / "stack.npy", *SIZES, "--T", 1, "--steps", 2]
    code, err = main([*args, "--params", inputs / "p.npy", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--params must be finite" in err


def test_cli_fifo_input_is_refused(tmp_path):
    """--coefficient naming a FIFO blocked forever in open(); now exit 2 without opening it."""
    fifo = tmp_path / "A.npy"
    os.mkfifo(fifo)
    res = run_cli(["elliptic", "--coefficient", fifo, *SIZES, "--out", tmp_path / "out"], 1, False)
    assert res.returncode == 2, res.stderr
    assert f"error: --coefficient {fifo}: not a regular file (a FIFO)" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


# -- 3. exit codes of signals ------------------------------------------------------------------


def signalled(cmd: list, ready, sig: int, times: int = 1) -> tuple[int, str]:
    """Run ``cmd``, wait until ``ready()`` (or its end), send ``sig`` ``times`` times; (exit
    code, stderr). Killed after 60 s: a hang fails the test."""
    proc = subprocess.Popen(
        list(map(str, cmd)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(1200):
            if ready() or proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.fail(f"the command ended before the signal (make it longer): {cmd}")
        for _ in range(times):
            proc.send_signal(sig)
            time.sleep(0.3)
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"hang after signal {sig}: {cmd}")
    return proc.returncode, err


@pytest.mark.parametrize(
    "ranks, sig, times, code",
    [(1, signal.SIGTERM, 1, 143), (1, signal.SIGINT, 2, 130), (2, signal.SIGINT, 1, 130),
     (2, signal.SIGTERM, 1, 143)],
)  # fmt: skip
def test_cli_signal_during_the_time_loop(tmp_path, ranks, sig, times, code):
    """SIGINT / SIGTERM while the VTX writers are open: exit 130 / 143 on any rank count, no
    traceback (a second Ctrl-C interrupted a PETSc __del__), no abort of ADIOS2 (exit 6), no
    hang, the earlier results and nothing else left."""
    inputs = a_folder(tmp_path / "in")
    A = np.load(inputs / "A.npy")
    np.save(inputs / "stack.npy", np.stack([A, A.T] * 2000))  # ~30 s: a window under any load
    out = tmp_path / "out"
    args = ["parabolic", "--coefficients", inputs / "stack.npy", *SIZES, "--T", 1]
    args += ["--steps", 4000, "--update", "full", "--no-plot", "--out", out]
    cmd = [sys.executable, "-m", "dolfinx_lod.cli", *args]
    if ranks > 1:  # (a second Ctrl-C to mpiexec makes it kill the job itself)
        cmd = [mpirun(), "-n", str(ranks), *cmd]
    # The time loop has started when the VTX folder exists.
    status, err = signalled(cmd, lambda: any(tmp_path.glob(".out.tmp-*/lod.bp")), sig, times)
    assert status == code, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "the results in" in err and "are unchanged" in err
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


# -- 2. a full disk: exit 4 on every rank, no hang, no ADIOS2 abort -----------------------------


@pytest.mark.mpi
@pytest.mark.parametrize("command", ["elliptic", "parabolic"])
def test_cli_full_disk_before_a_vtx_frame(tmp_dir, comm, capsys, monkeypatch, command):
    """The disk is full when a VTX frame is due (an injected free space of 1 MiB): every rank
    exits 4 with one message (ADIOS2 deadlocked in MPI_Win_free or aborted before)."""
    inputs = a_folder(tmp_dir / "in") if comm.rank == 0 else tmp_dir / "in"
    comm.Barrier()
    monkeypatch.setattr("dolfinx_lod.io.free_bytes", lambda folder: 2**20)
    out = tmp_dir / "out"
    args = ["elliptic", "--coefficient", inputs / "A.npy", *SIZES, "--no-plot", "--out", out]
    if command == "parabolic":
        args = ["parabolic", "--coefficients", inputs / "stack.npy", *SIZES, "--T", 1]
        args += ["--steps", 2, "--no-plot", "--out", out]
    code, err = main(args, capsys)
    assert code == 4
    if comm.rank == 0:
        assert err.count("error:") == 1 and "no space left on the device" in err, err
    assert not out.exists() and not list(tmp_dir.glob(".out.tmp-*"))


def test_a_lost_interrupt_is_raised_at_the_next_time_step():
    """On one rank SIGTERM is raised at once where the handler runs; if that exception is
    swallowed there (a library catching it, the loop going on), the next time step's check
    raises it again, once; nothing is left after the command. (A fresh-clone run under load
    once finished a 4000-step loop with exit 0 after its SIGTERM.)"""
    comm = MPI.COMM_SELF
    earlier = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with signals.handle_signals():
            with contextlib.suppress(Terminated):  # the library that swallows it
                signals._on_signal(signal.SIGTERM, None)
            with pytest.raises(Terminated):
                check_interrupt(comm)
            check_interrupt(comm)  # raised once
            with contextlib.suppress(KeyboardInterrupt):
                signals._on_signal(signal.SIGINT, None)
        check_interrupt(comm)  # the command has ended: forgotten
    finally:
        for s, handler in earlier.items():
            signal.signal(s, handler)


DEADLOCK = """
from mpi4py import MPI
import dolfinx_lod.cli.signals as signals
signals.CLEANUP_SECONDS = 2.0
comm = MPI.COMM_WORLD
with signals.handle_signals():
    comm.Barrier()
    if comm.rank == 0:
        open("READY", "w").close()
    comm.recv(source=1 - comm.rank)  # both ranks wait inside MPI for ever
"""


def test_sigterm_ends_ranks_that_wait_inside_mpi(tmp_path):
    """Both ranks wait inside MPI, where no Python handler runs: the watchdog (fed by the
    wake-up pipe) stops the job with 143 instead of leaving a hung job that ignores SIGTERM."""
    ready = tmp_path / "ready"
    cmd = [mpirun(), "-n", "2", sys.executable, "-c", DEADLOCK.replace("READY", str(ready))]
    code, err = signalled(cmd, ready.exists, signal.SIGTERM)
    assert code == 143, err
    assert "did not stop within 2 s of the signal" in err


# -- 2. checkpoints: one committed set per epoch; a resume checks it ----------------------------


@pytest.mark.mpi
def test_resume_refuses_checkpoints_of_different_epochs(tmp_dir, comm):
    """An interrupt between the ranks' parts left them one epoch apart, and --resume hung:
    now every rank refuses the set, naming the epochs (also a part newer than the commit
    marker on one rank only)."""
    from test_reliability import new_run

    training = (dl.create_nested_grids(comm, 4, 16), dl.coefficients.cont_family(16))
    run = new_run(training, 20)
    run.trainer.train(checkpoint=tmp_dir)
    marker = json.loads((tmp_dir / f"checkpoint-of{comm.size}.json").read_text())
    assert marker["epoch"] == 20 and marker["ranks"] == comm.size
    resumed = new_run(training, 40)
    assert resumed.trainer.load_checkpoint(tmp_dir) and resumed.trainer.epoch == 20
    part = tmp_dir / f"checkpoint-rank{comm.rank}-of{comm.size}.pt"
    if comm.rank == comm.size - 1:  # this rank wrote the next epoch's part, then the stop
        state = torch.load(part, weights_only=True)
        torch.save({**state, "epoch": 30}, part)
    comm.Barrier()
    last = f"rank {comm.size - 1}: epoch 30"
    with pytest.raises(InputError, match=f"not one committed set .*{last}; committed: epoch 20"):
        new_run(training, 40).trainer.load_checkpoint(tmp_dir)
    for r in (run, resumed):
        r.basis.destroy()


def test_cli_resume_refuses_another_test_set(tmp_path, capsys):
    args = [*TRAIN, "--network", "reduced:4:8x2", "--epochs", 10, "--checkpoint-every", 5]
    assert main([*args, "--test-samples", 2, "--out", tmp_path / "t"], capsys)[0] == 0
    code, err = main([*args, "--test-samples", 3, "--resume", "--out", tmp_path / "t"], capsys)
    assert code == 2 and re.search(r"test_samples = 2 \(here 3\)", err), err


@pytest.mark.parametrize("command", ["elliptic", "train"])
def test_cli_size_beyond_the_machine(tmp_path, capsys, command):
    """--fine 100000 allocated 74.5 GiB and died with a traceback: refused before any
    allocation with the estimate."""
    args = ["elliptic", "--fine", 100000, *SIZES]
    if command == "train":
        args = ["train", "--family", "cont", "--fine", 65536, *SIZES, "--samples", 2]
    code, err = main([*args, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "--fine: " in err and "GiB of memory" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_file_of_the_wrong_size_refused_before_it_is_read(tmp_path, capsys):
    """A large sparse coefficient file (all zeros) whose size N_H does not divide: the grid
    check comes before the values are read (it read all of a 3.2 GB file first)."""
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(4001, 4001))
    del big  # a sparse file: nothing written
    code, err = main(["elliptic", "--coefficient", path, *SIZES, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "must divide" in err and "must be > 0" not in err, err


def test_cli_train_interrupted_on_two_ranks_resumes(tmp_path):
    """Ctrl-C to a 2-rank train: both ranks stop at the same epoch (exit 130), the checkpoint
    set is one committed epoch, and --resume finishes (it hung on parts one epoch apart)."""
    out = tmp_path / "t"
    args = [*TRAIN, "--network", "reduced:4:8x2", "--checkpoint-every", 2, "--out", out]
    cmd = [mpirun(), "-n", "2", sys.executable, "-m", "dolfinx_lod.cli", *args]
    marker = out / "checkpoint-of2.json"  # training runs when the first set is committed
    code, err = signalled([*cmd, "--epochs", 100000], marker.exists, signal.SIGINT)
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    epoch = json.loads((out / "checkpoint-of2.json").read_text())["epoch"]
    res = run(["-m", "dolfinx_lod.cli", *args, "--epochs", epoch + 2, "--resume"], 2)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "summary.json").read_text())["resumed"] is True

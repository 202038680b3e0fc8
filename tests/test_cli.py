"""The `dolfinx-lod elliptic` command line, serial and under mpirun."""

import json
import re

import numpy as np
import pytest
from helpers import run_cli as run


@pytest.fixture(scope="module")
def coefficient(tmp_path_factory):
    path = tmp_path_factory.mktemp("coef") / "A.npy"
    A = np.random.default_rng(3).uniform(0.05, 1.0, (32, 32))
    A[:16, :] *= 10  # lower half (small y) ten times larger: checks the orientation
    np.save(path, A)
    return path


def test_elliptic_writes_results(tmp_path, coefficient):
    out = tmp_path / "out"
    args = ["elliptic", "--coefficient", coefficient, "--coarse", 4, "--layers", 2]
    run([*args, "--reference", "--out", out])
    summary = json.loads((out / "summary.json").read_text())
    for key in ("method", "n", "NH", "l", "ranks", "rel_l2_error", "rel_energy_error", "timings"):
        assert key in summary
    assert (summary["method"], summary["n"], summary["NH"], summary["l"]) == ("galerkin", 32, 4, 2)
    assert 0 < summary["rel_l2_error"] < 0.2
    assert {"basis", "coarse_solve", "fine_solve", "wall"} <= set(summary["timings"])
    assert summary["coarse_fem_rel_l2_error"] > 2 * summary["rel_l2_error"]
    u, ref = np.load(out / "solution.npy"), np.load(out / "reference.npy")
    assert u.shape == ref.shape == (33, 33)
    assert np.abs(u[[0, -1], :]).max() == 0 and np.abs(u[:, [0, -1]]).max() == 0
    # The bottom half conducts ten times better: the solution is smaller there.
    assert ref[:16].max() < ref[17:].max()
    rel = np.sqrt(((u - ref) ** 2).sum() / (ref**2).sum())
    assert rel == pytest.approx(summary["rel_l2_error"], rel=0.3)
    assert (out / "elliptic.png").stat().st_size > 10_000
    # Without --reference: the LOD alone, no error keys, no reference file, the same solution.
    alone = tmp_path / "alone"
    run([*args, "--no-plot", "--out", alone])
    summary = json.loads((alone / "summary.json").read_text())
    assert {"method", "n", "NH", "l", "timings", "files"} <= set(summary)
    assert not any("error" in key for key in summary) and "fine_solve" not in summary["timings"]
    assert summary["reference"] is False and not (alone / "reference.npy").exists()
    assert np.abs(np.load(alone / "solution.npy") - u).max() <= 1e-12


def test_elliptic_under_mpirun_matches_serial(tmp_path, coefficient):
    common = [
        "elliptic",
        "--coefficient",
        coefficient,
        "--coarse",
        4,
        "--layers",
        1,
        "--method",
        "petrov-galerkin",
        "--source",
        2.5,
        "--no-plot",
    ]
    run(common + ["--out", tmp_path / "s"])
    run(common + ["--out", tmp_path / "p"], ranks=2)
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    p = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert (s["ranks"], p["ranks"], p["method"]) == (1, 2, "petrov-galerkin")
    us, up = np.load(tmp_path / "s" / "solution.npy"), np.load(tmp_path / "p" / "solution.npy")
    assert np.abs(us - up).max() <= 1e-10 and np.abs(us).max() > 0.1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coarse", 5, "--layers", 1], r"NH \(5\) must divide"),
        (["--coarse", 4, "--layers", 0], "layers l must be an integer >= 1"),
    ],
)
def test_elliptic_bad_input(tmp_path, coefficient, args, message):
    import re

    res = run(
        ["elliptic", "--coefficient", coefficient, *args, "--out", tmp_path], ranks=2, check=False
    )
    assert res.returncode != 0
    assert re.search(message, res.stderr), res.stderr
    assert not (tmp_path / "summary.json").exists()


def test_elliptic_bad_array(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((4, 5)))
    res = run(
        ["elliptic", "--coefficient", bad, "--coarse", 2, "--layers", 1, "--out", tmp_path / "out"],
        check=False,
    )
    assert res.returncode == 2 and r"coarse cells in direction x NH (2) must divide" in res.stderr
    neg = tmp_path / "neg.npy"
    np.save(neg, -np.ones((4, 4)))
    res = run(
        ["elliptic", "--coefficient", neg, "--coarse", 2, "--layers", 1, "--out", tmp_path / "out"],
        check=False,
    )
    assert res.returncode == 2 and "must be > 0" in res.stderr


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(M, n, n) = (4, 32, 32): rough, changing every step in the lower-left 8 x 8 cells."""
    from test_parabolic import corner_stack

    path = tmp_path_factory.mktemp("stack") / "stack.npy"
    np.save(path, corner_stack(32, 4, 8, seed=5))
    return path


def parabolic(stack, out, **options) -> list:
    """`parabolic` arguments on the 32 x 32 test stack (NH = 4, l = 1); options override."""
    args = {"coarse": 4, "layers": 1, "T": 1.0, "steps": 4, **options}
    flags = []
    for key, value in args.items():
        flags += ["--" + key.replace("_", "-"), *(value if isinstance(value, list) else [value])]
    return ["parabolic", "--coefficients", stack, *flags, "--out", out]


@pytest.mark.slow
def test_parabolic_same_on_1_2_3_ranks(tmp_path, stack):
    runs = []
    for ranks in (1, 2, 3):
        out = tmp_path / str(ranks)
        options = {"T": 0.5, "update": "selective", "no_plot": [], "reference": []}
        run(parabolic(stack, out, **options), ranks=ranks)
        summary = json.loads((tmp_path / str(ranks) / "summary.json").read_text())
        runs.append((summary, np.load(tmp_path / str(ranks) / "solution_final.npy")))
    ref_summary, ref = runs[0]
    assert np.abs(ref).max() > 0.05
    for summary, u in runs[1:]:
        assert np.abs(u - ref).max() <= 1e-10
        for a, b in zip(summary["steps_record"], ref_summary["steps_record"], strict=True):
            assert a["recomputed_patches"] == b["recomputed_patches"]
            # The FEM reference solves to rtol 1e-8 (FEM_RTOL), its GAMG depends on the ranks.
            assert a["rel_l2_error"] == pytest.approx(b["rel_l2_error"], rel=1e-6)


def test_parabolic_writes_results(tmp_path, stack):
    out = tmp_path / "out"
    capacity = tmp_path / "c.npy"
    np.save(capacity, np.full((32, 32), 2.0))
    options = {"capacity": capacity, "source": 2.0, "snapshots": [2, 4], "reference": []}
    run(parabolic(stack, out, **options), ranks=2)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["n"], summary["NH"], summary["l"], summary["ranks"]) == (
        4,
        32,
        4,
        1,
        2,
    )
    assert len(summary["steps_record"]) == 4
    step = summary["steps_record"][-1]
    assert step["t"] == pytest.approx(1.0)
    assert {"basis_update", "coarse_assembly", "coarse_solve", "fine_solve"} <= set(step["timings"])
    assert summary["rel_l2_error_final"] == step["rel_l2_error"] < 0.2
    u, ref = np.load(out / "solution_final.npy"), np.load(out / "reference_final.npy")
    assert u.shape == ref.shape == (33, 33)
    rel = np.sqrt(((u - ref) ** 2).sum() / (ref**2).sum())
    assert rel == pytest.approx(summary["rel_l2_error_final"], rel=0.3)
    for name in ("snapshot_step0002.png", "snapshot_step0004.png"):
        assert (out / name).stat().st_size > 10_000
    assert not (out / "snapshot_step0001.png").exists()
    for name in ("lod.bp", "coefficient.bp"):
        assert (out / name).is_dir() and any((out / name).iterdir())
    assert not list(out.glob(".*partial"))


def test_parabolic_without_reference_and_output_every(tmp_path, stack):
    out = tmp_path / "out"
    run(parabolic(stack, out, T=1.0, steps=4, no_plot=[], output_every=3, snapshots=[2]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] is False and summary["output_steps"] == [2, 3, 4]
    assert not any("error" in key for key in summary)
    assert not any("error" in key for key in summary["steps_record"][-1])
    assert "fine_solve" not in summary["mean_step_seconds"]
    assert not (out / "reference_final.npy").exists() and (out / "solution_final.npy").exists()
    assert (out / "lod.bp").is_dir() and (out / "coefficient.bp").is_dir()
    # The default: only the snapshot steps and T.
    default = tmp_path / "default"
    run(parabolic(stack, default, T=1.0, steps=4, no_plot=[], snapshots=[1]))
    assert json.loads((default / "summary.json").read_text())["output_steps"] == [1, 4]
    bad = run(parabolic(stack, tmp_path / "bad", output_every=0), check=False)
    assert bad.returncode == 2 and "--output-every must be >= 1" in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ({"T": 0.0}, "--T must be > 0, got 0.0"),
        ({"steps": 5}, "coefficient stack has 4 entries but steps M = 5"),
    ],
)
def test_parabolic_bad_input(tmp_path, stack, args, message):
    res = run(parabolic(stack, tmp_path / "o", **args), ranks=2, check=False)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def test_parabolic_bad_stack(tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((8, 8)))
    res = run(
        [
            "parabolic",
            "--coefficients",
            bad,
            "--coarse",
            2,
            "--layers",
            1,
            "--T",
            1,
            "--steps",
            1,
            "--out",
            tmp_path / "o",
        ],
        check=False,
    )
    expected = "--coefficients array must have shape (M, n_y, n_x)"
    assert res.returncode == 2 and expected in res.stderr


def test_elliptic_rectangle_with_insulated_sides(tmp_path):
    """The docs/cli.md example: square cells on [0, 2] x [0, 1], insulated left and right
    sides; serial and on 2 ranks the same; VTX folders next to summary.json."""
    args = "elliptic --fine 64,32 --coarse 8,4 --domain 0,0,2,1 --neumann left,right --layers 2"
    run([*args.split(), "--reference", "--out", tmp_path / "s"])
    run([*args.split(), "--no-plot", "--out", tmp_path / "p"], ranks=2)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert (summary["n"], summary["NH"]) == ([64, 32], [8, 4])
    assert summary["neumann"] == ["left", "right"]
    assert summary["domain"] == [[0.0, 0.0], [2.0, 1.0]]
    assert summary["rel_l2_error"] < summary["coarse_fem_rel_l2_error"] / 3
    u = np.load(tmp_path / "s" / "solution.npy")
    assert u.shape == (33, 65)  # (n_y + 1, n_x + 1)
    assert np.abs(u[[0, -1], :]).max() == 0.0  # u = 0 at the bottom and top
    assert np.abs(u[16, [0, -1]]).min() > 0.1 * np.abs(u).max()  # free at left and right
    assert np.abs(np.load(tmp_path / "p" / "solution.npy") - u).max() <= 1e-10
    for name, fields in (("solution.bp", ("u_ms", "u_h")), ("coefficient.bp", ("a",))):
        assert summary["files"][name.replace(".bp", "_vtx")] == name
        metadata = (tmp_path / "s" / name / "md.0").read_bytes()
        for field in fields:
            assert f'<DataArray Name="{field}" />'.encode() in metadata


@pytest.mark.parametrize(
    "args, message",
    [
        (["--neumann", "left,up"], r"neumann sides must be distinct names out of"),
        (["--neumann", "left,right,bottom,top"], "at least one side must stay Dirichlet"),
        (["--coarse", "3,4"], r"coarse cells in direction x NH \(3\) must divide .* n \(16\)"),
        (["--coarse", "4,4,4"], r"--coarse 4,4,4 has 3 counts; the coefficient is 2D"),
        (["--domain", "0,0,2"], r"--domain needs 4 numbers"),
        (["--domain", "0,0,0,1"], r"domain must be"),
    ],
)
def test_elliptic_bad_grid_options(tmp_path, args, message):
    base = ["elliptic", "--fine", "16,8", "--coarse", "4,2", "--layers", 1]
    res = run([*base, *args, "--out", tmp_path / "o"], ranks=2, check=False)
    assert res.returncode == 2 and re.search(message, res.stderr), res.stderr
    assert not (tmp_path / "o").exists()


def test_parabolic_rectangle_with_an_insulated_side(tmp_path):
    stack = tmp_path / "stack.npy"
    rng = np.random.default_rng(2)
    np.save(stack, rng.uniform(0.05, 1.0, (3, 16, 32)))
    out = tmp_path / "out"
    run(
        "parabolic --coefficients STACK --coarse 8,4 --domain 0,0,2,1 --neumann top --layers 2 "
        "--T 0.1 --steps 3 --reference --no-plot --out OUT".replace("STACK", str(stack))
        .replace("OUT", str(out))
        .split()
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["NH"], summary["neumann"]) == ([32, 16], [8, 4], ["top"])
    assert summary["rel_l2_error_final"] < 0.1
    u = np.load(out / "solution_final.npy")
    assert u.shape == (17, 33) and np.abs(u[0]).max() == 0.0  # bottom: u = 0
    assert np.abs(u[-1, 1:-1]).min() > 0.0  # top: insulated (its corners lie on left, right)


def test_library_arguments_become_options():
    """Library messages name arguments (`name`); the CLI prints the option that gives them,
    per command, and leaves other quoted words alone."""
    from dolfinx_lod.cli.app import build_parser
    from dolfinx_lod.cli.options import as_options

    parser = build_parser()
    message = "give `p`; `params` of `stack`, see `grids`, `lr` and `Function`"
    assert as_options(message, parser, "parabolic") == (
        "give --params; --params of --coefficients, see --domain/--coarse/--fine, `lr` and "
        "`Function`"
    )
    assert as_options("give `p`, smaller `lr`", parser, "elliptic") == "give --param, smaller `lr`"
    assert as_options("a smaller `lr`, `resume`", parser, "train") == "a smaller --lr, --resume"

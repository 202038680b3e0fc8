"""The demos run end to end in a reduced size, serially and under mpirun -n 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mpirun

DEMOS = Path(__file__).parent.parent / "demos"
KEYS = (
    "rel_error_final_mean",
    "rel_error_final_max",
    "basis_error_mean",
    "lod_vs_fem_final_mean",
    "baseline_rel_error_final_mean",
    "wall_seconds",
)


@pytest.mark.slow
@pytest.mark.parametrize("demo, ranks", [("example1", 1), ("example2", 2)])  # serial and MPI paths
def test_demo_tiny(tmp_path, demo, ranks):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [
        mpirun(),
        "-n",
        str(ranks),
        sys.executable,
        str(DEMOS / f"{demo}.py"),
        "--tiny",
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]
    for attempt in range(2):  # the second run reuses the cached model
        subprocess.run(cmd, check=True, timeout=600, capture_output=True)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model_reused"] is bool(attempt)
    for key in KEYS:
        assert key in summary
    assert 0 < summary["rel_error_final_mean"] <= summary["rel_error_final_max"] < 0.5
    assert 0 < summary["lod_vs_fem_final_mean"] < 0.5
    for name in summary["figures"].values():
        assert (out / name).stat().st_size > 5_000
    settings = summary["settings"]
    assert settings["samples"] == 4 and settings["network"] == "reduced:8:16x2"
    assert settings["alpha"] == (0.1 if demo == "example1" else None)
    assert len(settings["test_schedules"]) == len(summary["rel_error_final"]) == 2
    assert settings["schedule_clearance"] > 0
    assert len(summary["rel_error_euclidean_all_steps"]) == 2
    assert 0 < summary["rel_error_euclidean_all_steps_mean"] < 0.5
    expected = {"fig3_loss.png", "fig4_basis_functions.png", "fig8_difference.png"}
    if demo == "example2":
        expected |= {"fig9_coefficients.png", "fig11_solutions.png"}
    assert expected <= set(summary["figures"].values())


@pytest.mark.slow
def test_paper_network_demo_checkpoints_and_resumes(tmp_path):
    """The paper's MLP in the demo (tiny problem): a run with an epoch budget trains and
    checkpoints; a rerun with a larger budget resumes from the checkpoint instead of starting
    over; the node (0.5, 0.5)'s loss curve is recorded for every epoch."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    base = [sys.executable, str(DEMOS / "example1.py"), "--tiny", "--network", "mlp:8x2"]
    base += ["--alpha", "0.01", "--cache", str(cache), "--out", str(out)]
    for epochs, resumed in ((3, False), (6, True)):
        subprocess.run([*base, "--epochs", str(epochs)], check=True, timeout=600)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["training"]["epochs"] == epochs
        assert summary["training"]["resumed"] is resumed
        assert summary["settings"]["alpha"] == 0.01
    (model,) = cache.iterdir()
    assert model.name.startswith("cont-")  # alpha 0.01: the family of the paper's code
    assert list(model.glob("checkpoint-rank0-of1.pt"))
    history = json.loads((model / "summary.json").read_text())["loss_history"]
    assert len(history["node_energy"]) == len(history["node_penalty"]) == 6
    assert any(history["node_penalty"])


#: The teaching demos at small sizes: (script, arguments).
TEACHING = {
    "demo_elliptic": ["--coarse", "4", "--fine", "16", "--layers", "1"],
    "demo_parabolic": ["--coarse", "4", "--fine", "16", "--layers", "1", "--steps", "4"],
    "demo_lod_ann": ["--coarse", "4", "--fine", "16", "--samples", "4", "--epochs", "20"],
    "demo_heat_rectangle": ["--quick"],
}


@pytest.fixture(scope="module")
def teaching_runs(tmp_path_factory):
    """Every teaching demo run serially and under mpirun -n 2: {(demo, ranks): summary}."""
    out = {}
    for demo, args in TEACHING.items():
        for ranks in (1, 2):
            folder = tmp_path_factory.mktemp(f"{demo}-{ranks}")
            cmd = [mpirun(), "-n", str(ranks), sys.executable, str(DEMOS / f"{demo}.py")]
            proc = subprocess.run(
                [*cmd, *args, "--out", str(folder)], timeout=600, capture_output=True, text=True
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert "\r" not in proc.stdout + proc.stderr  # no progress bar off a terminal
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["ranks"] == ranks
            for name in summary["files"]:
                assert (folder / name).is_dir()  # VTX output (ADIOS2 folders)
            out[demo, ranks] = summary
    return out


@pytest.mark.slow
def test_demo_elliptic(teaching_runs):
    s = teaching_runs["demo_elliptic", 1]
    assert 0 < s["rel_l2_error"] < s["coarse_fem_rel_l2_error"] / 2
    assert teaching_runs["demo_elliptic", 2]["rel_l2_error"] == pytest.approx(
        s["rel_l2_error"], rel=1e-8
    )


@pytest.mark.slow
def test_demo_parabolic(teaching_runs):
    s = teaching_runs["demo_parabolic", 1]
    # Step 1 computes every corrector; later steps only patches near the changing quarter.
    assert s["recomputed_patches"][0] == 16 and max(s["recomputed_patches"][1:]) < 16
    assert 0 < s["rel_l2_error_final"] < 0.2
    assert teaching_runs["demo_parabolic", 2]["rel_l2_error_final"] == pytest.approx(
        s["rel_l2_error_final"],
        rel=1e-6,  # the FEM reference solves to rtol 1e-8
    )


@pytest.mark.slow
def test_demo_heat_rectangle(teaching_runs):
    s = teaching_runs["demo_heat_rectangle", 1]
    assert 0 < s["rel_energy_error_final"] < 0.1  # LOD vs the plain DOLFINx loop at T
    assert teaching_runs["demo_heat_rectangle", 2]["rel_energy_error_final"] == pytest.approx(
        s["rel_energy_error_final"], rel=1e-8
    )


@pytest.mark.slow
def test_demo_lod_ann(teaching_runs):
    for ranks in (1, 2):
        s = teaching_runs["demo_lod_ann", ranks]
        assert 0 < s["lod_rel_l2_error"] < 0.2
        assert 0 < s["lod_ann_rel_l2_error"] < 0.5  # 20 epochs: a rough network


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_battery3d_tiny(tmp_path, ranks):
    out = tmp_path / "out"
    cmd = [mpirun(), "-n", str(ranks), sys.executable, str(DEMOS / "battery3d.py"), "--tiny"]
    subprocess.run([*cmd, "--out", str(out)], check=True, timeout=600, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n"], summary["ranks"]) == (8, ranks)
    for run in ("lod", "lod_ann"):
        assert 0 < summary[run]["rel_l2_error_final"] < 1.0
        assert summary[run]["basis_update_seconds_mean"] > 0
    assert summary["basis_update_speedup"] > 1
    for name in summary["figures"].values():
        assert (out / name).stat().st_size > 5_000

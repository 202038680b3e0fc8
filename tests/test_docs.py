"""The README is the entry point: short, its links resolve, its API example runs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_is_short_and_its_links_resolve():
    assert len(README.splitlines()) <= 200
    for page in ("method", "api", "cli", "results", "performance", "testing", "docker"):
        assert f"docs/{page}.md" in README
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


@pytest.mark.slow
def test_readme_api_example_runs():
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    errors = eval(out.stdout.strip().splitlines()[-1])  # the printed errors dict
    assert 0 < errors["l2"] < 0.05 and errors["l2"] < errors["coarse_fem_l2"] / 3


def api_blocks(*markers: str) -> str:
    """The python blocks of docs/api.md that contain all of ``markers``, joined."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    return "\n".join(b for b in blocks if all(m in b for m in markers))


@pytest.mark.slow
def test_api_grids_and_time_loop_examples_run(tmp_path):
    """docs/api.md: the rectangle with insulated sides, a time-dependent DOLFINx Function in
    the time loop and the observer writing a VTX frame every 4th step."""
    code = "\n".join(
        [
            "import dolfinx_lod as dl  # first: loads the PETSc libraries\nimport dolfinx.fem",
            "import numpy as np\nfrom mpi4py import MPI",
            "from dolfinx_lod.timestepping import CoefficientSchedule, run_parabolic",
            api_blocks("neumann=", "cell_array_shape"),
            api_blocks("def update(a_fun, t)"),
            api_blocks("observer(view)", "VTXWriter"),
            "print(grids.cell_array_shape, [r['step'] for r in res.records])",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "(32, 64) [1, 2, 3, 4, 5, 6, 7, 8]"
    assert b'<DataArray Name="u_ms" />' in (tmp_path / "out" / "lod.bp" / "md.0").read_bytes()


def test_bench_tables_equal_their_results():
    """Every bench-table block of README.md and docs/ is what ``python -m bench report``
    regenerates from bench/results/ (no hand-copied numbers)."""
    from bench.report import BLOCK, documents, report

    assert any(BLOCK.search(path.read_text()) for path in documents())
    assert report(check=True) == []


def test_every_result_names_its_commit():
    """Every JSON in bench/results/ records the commit it measured (``provenance.commit.sha``;
    an inferred one says so and how), so no quoted number is of unknown code."""
    from bench.markdown import RESULTS

    files = sorted(RESULTS.glob("*.json"))
    assert files
    unknown = []
    for path in files:
        commit = json.loads(path.read_text()).get("provenance", {}).get("commit") or {}
        if len(commit.get("sha", "")) != 40 or (commit.get("inferred") and not commit.get("how")):
            unknown.append(path.name)
    assert unknown == []


def test_bench_report_rejects_a_table_without_generator():
    from bench.report import regenerate

    with pytest.raises(KeyError, match="no-such-table"):
        regenerate("<!-- bench-table: no-such-table -->\n| x |\n<!-- /bench-table -->")


def test_quoted_numbers_equal_their_results():
    """Every measured number bench/quotes.py ties to a result JSON reads as the JSON says, and a
    quote that the JSON contradicts (or whose key is missing) is reported or raises."""
    from bench.quotes import mismatches

    assert mismatches() == []
    wrong = ("docs/boundary.md", "stalls at {} (2D", ("boundary-1.json:rows.0.ratio_abs",), ".3g")
    assert mismatches([wrong]) == ["docs/boundary.md: 'stalls at 2.27 (2D'"]
    with pytest.raises(KeyError):
        mismatches([("README.md", "{}", ("boundary-1.json:rows.0.no_such_key",), ".3g")])


def test_bench_run_takes_ranks_after_the_case_and_script_options_after_dashes():
    from bench.__main__ import parse

    args, extra = parse(["run", "step", "--ranks", "2", "--", "--cases", "battery", "--ranks"])
    assert (args.case, args.ranks, extra) == ("step", 2, ["--cases", "battery", "--ranks"])
    args, extra = parse(["run", "--ranks", "1", "basis"])
    assert (args.case, args.ranks, extra) == ("basis", 1, [])
    with pytest.raises(SystemExit):
        parse(["run", "step", "--cases", "battery"])  # script options need --

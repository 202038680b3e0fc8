"""What a user's process sees besides the numbers: imports, logs, PETSc's options database."""

import io
import subprocess
import sys

import pytest
from helpers import run_cli as run

from dolfinx_lod.progress import PlainProgress, progress


def test_import_loads_neither_torch_nor_the_study_code():
    code = (
        "import sys, dolfinx_lod; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('dolfinx_lod.paper')"
        " or m.startswith('dolfinx_lod.neural')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_library_modules_never_import_the_study_code():
    from pathlib import Path

    import dolfinx_lod

    root = Path(dolfinx_lod.__file__).parent
    for path in root.rglob("*.py"):
        if "paper" not in path.relative_to(root).parts:
            assert "dolfinx_lod.paper" not in path.read_text(), path


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_progress_lines_off_a_terminal():
    stream = io.StringIO()
    assert list(progress(range(100), "patches", "patch", stream=stream)) == list(range(100))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("patches: 100/100 (100 %) patch")
    assert isinstance(progress(range(3), "x", stream=stream), PlainProgress)
    terminal = Terminal()
    list(progress(range(3), "x", stream=terminal))
    assert "\r" in terminal.getvalue()  # a tqdm bar on a terminal
    quiet = io.StringIO()
    assert list(progress(range(3), "x", show=False, stream=quiet)) == [0, 1, 2]
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_a_run_under_a_pipe_writes_no_carriage_returns(tmp_path):
    proc = run(
        [
            "elliptic",
            "--fine",
            16,
            "--coarse",
            4,
            "--layers",
            1,
            "--no-plot",
            "--out",
            tmp_path / "o",
        ]
    )
    log = proc.stdout + proc.stderr
    assert "\r" not in log
    assert "correctors:" in log  # plain progress lines instead of a bar

"""Tables of README.md and docs/ regenerated from the result JSON.

A table in a Markdown file sits between ``<!-- bench-table: NAME -->`` and
``<!-- /bench-table -->``; :data:`TABLES` maps NAME to the function that writes it from
bench/results/. ``python -m bench report`` rewrites every such block; ``--check`` only says
which differ (tests/test_docs.py runs it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from bench.harness import ROOT

RESULTS = ROOT / "bench" / "results"
DOCUMENTS = ("README.md", "docs")
BLOCK = re.compile(
    r"(<!-- bench-table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench-table -->)", re.S
)

#: Steppers of bench_step.py in table order: JSON key -> row label.
STEPPERS = {
    "lod_galerkin": "LOD Galerkin, full update",
    "lod_petrov_galerkin": "LOD Petrov–Galerkin, full update",
    "lod_galerkin_selective": "LOD Galerkin, selective update",
    "lod_learned_operators": "learned local operators",
}


def load(name: str) -> dict:
    """A result JSON of bench/results/."""
    return json.loads((RESULTS / name).read_text())


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _phases(mean_step: dict) -> str:
    """ "8.44 (basis_update 7.46, ...)": the phases of a mean step."""
    return ", ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in mean_step.items())


def step_table(result: str) -> str:
    """One online step of every stepper and case of bench_step.py's ``result``: mean seconds
    (phases), the FEM step over the stepper's step, patches recomputed per step after the
    first (mean), relative L2 error at T against the fine FEM."""
    header = ["case", "stepper", "mean step (phases) [s]", "FEM step / step", "patches per step"]
    rows = []
    for case, data in load(result)["cases"].items():
        fem = data["fem"]
        rows.append(
            [
                case,
                "fine FEM",
                f"{fem['step_seconds']:.3g} ({_phases(fem['mean_step'])})",
                "1",
                "-",
                "-",
            ]
        )
        for key, label in STEPPERS.items():
            if key not in data:
                continue
            s = data[key]
            recomputed = s.get("patches_recomputed_per_step", [])
            mean = sum(recomputed[1:]) / max(len(recomputed) - 1, 1) if recomputed else 0.0
            ratio = fem["step_seconds"] / s["step_seconds"]
            rows.append(
                [
                    case,
                    label,
                    f"{s['step_seconds']:.3g} ({_phases(s['mean_step'])})",
                    f"{ratio:.3g}",
                    f"{mean:.0f}",
                    f"{s['rel_l2_error_T_vs_fem']:.2g}",
                ]
            )
    return markdown(header + ["rel. L2 error at T"], rows)


def inclusions_table(result: str) -> str:
    """LOD-ANN on inclusion fields (bench_inclusions.py's ``result``), judged by the solution:
    per run the mean energy errors over the held-out fields against the fine FEM (LOD-ANN, the
    classical LOD, their ratio) and against the classical LOD (LOD-ANN, the baselines)."""
    header = ["run", "fields (train/test)", "epochs", "train [s]", "LOD-ANN vs FEM"]
    header += ["classical LOD vs FEM", "ratio", "LOD-ANN vs LOD", "mean / none vs LOD"]
    header += ["corrector data"]
    rows = []
    for name, r in load(result)["runs"].items():
        base = r["baselines_vs_classical"]
        rows.append(
            [
                name,
                f"{r['problem']['train']}/{r['problem']['test']}",
                str(r["epochs"]),
                f"{r['train_seconds']:.0f}",
                f"{r['vs_fine']['learned']:.3f}",
                f"{r['vs_fine']['classical']:.3f}",
                f"{r['ratio_to_classical']:.1f}x",
                f"{r['lod_ann_vs_classical']['energy']['mean']:.3f}",
                f"{base['mean']:.3f} / {base['none']:.3f}",
                "yes" if r["uses_corrector_data"] else "no",
            ]
        )
    return markdown(header, rows)


#: Table name -> function writing its Markdown from the results.
TABLES: dict[str, Callable[[], str]] = {
    "step-32-512-2-2": lambda: step_table("step-32-512-2-2.json"),
    "lod-ann-inclusions": lambda: inclusions_table("lod-ann-inclusions.json"),
}


def documents() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    files = [ROOT / "README.md"]
    return files + sorted((ROOT / "docs").glob("*.md"))


def regenerate(text: str) -> str:
    """``text`` with every bench-table block rewritten from the results."""

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise KeyError(f"bench-table {name!r} has no generator in bench/report.py TABLES")
        return match.group(1) + TABLES[name]() + match.group(4)

    return BLOCK.sub(replace, text)


def report(check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only compare) every table; the files that differed."""
    changed = []
    for path in documents():
        text = path.read_text()
        new = regenerate(text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed

"""Result JSON in, Markdown out: the two helpers every table generator uses."""

from __future__ import annotations

import json

from bench.harness import ROOT

RESULTS = ROOT / "bench" / "results"


def load(name: str) -> dict:
    """A result JSON of bench/results/."""
    return json.loads((RESULTS / name).read_text())


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

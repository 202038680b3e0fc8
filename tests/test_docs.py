"""The README is the entry point: short, its links resolve, its API example runs."""

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

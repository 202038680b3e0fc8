"""``python -m bench list | run CASE [--ranks N] [-- ARGS] | report [--check]``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.cases import CASES
from bench.harness import ROOT, provenance
from bench.markdown import RESULTS
from bench.report import report


def run(name: str, ranks: int | None, extra: list[str]) -> int:
    """Run case ``name`` on ``ranks`` ranks; stamp its JSON with the provenance."""
    case = CASES[name]
    ranks = ranks or case.ranks
    out = RESULTS / case.result.format(ranks=ranks)
    script = ROOT / (case.script if "/" in case.script else f"bench/{case.script}")
    command = [sys.executable, str(script), *case.args, *extra]
    folder = ROOT / "results" / "bench" / name  # a demo's result folder
    if "--out" not in extra:
        command += ["--out", str(folder if case.demo else out)]
    elif case.demo:  # --out names the demo's result folder; the result JSON stays
        folder = ROOT / extra[extra.index("--out") + 1]
    else:
        out = ROOT / extra[extra.index("--out") + 1]
    if ranks > 1:
        command = ["mpirun", "-n", str(ranks), *command]
    shown = [c if c != sys.executable else "python" for c in command]
    # taken before the run (its date is the start): the result file the script writes would
    # make the work tree look dirty
    record = provenance([str(c).replace(f"{ROOT}/", "") for c in shown], ranks)
    code = subprocess.run(command, cwd=ROOT).returncode
    if code == 0:
        data = json.loads(((folder / "summary.json") if case.demo else out).read_text())
        data["provenance"] = record
        out.write_text(json.dumps(data, indent=2) + "\n")
        print(f"bench {name}: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return code


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command's arguments and the script options after ``--`` (``run`` passes those on;
    ``--ranks`` may come before or after the case)."""
    head, extra = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the registered cases")
    r = sub.add_parser("run", help="run one case (extra script options after --)")
    r.add_argument("case", choices=sorted(CASES))
    r.add_argument("--ranks", type=int, help="MPI ranks (the case's default otherwise)")
    p = sub.add_parser("report", help="regenerate the tables of README.md and docs/")
    p.add_argument("--check", action="store_true", help="only say which files differ")
    args = parser.parse_args(head)
    if extra and args.action != "run":
        parser.error("options after -- are for run only")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    if args.action == "list":
        for name, case in sorted(CASES.items()):
            print(f"{name:15s} {case.script:25s} {case.about}")
        return 0
    if args.action == "run":
        return run(args.case, args.ranks, extra)
    changed = report(check=args.check)
    for path in changed:
        print(f"{'differs' if args.check else 'rewritten'}: {path.relative_to(ROOT)}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())

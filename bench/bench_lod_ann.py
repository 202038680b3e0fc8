"""Benchmark: held-out energy basis error of LOD-ANN networks (issue "LOD-ANN that generalizes").

Run by hand (one rank; under the shared benchmark lock):

    flock /tmp/dolfinx_lod_bench.lock python bench/bench_lod_ann.py \\
        --out bench/results/lod-ann-example1.json

Trains each ``--network`` with ``dolfinx-lod train`` on Example 1 (family cont, ``--coarse``,
``--fine``, l = 1, K = ``--samples``) and records from its summary.json the mean relative
energy basis error on the held-out parameters, the baselines (no corrector, mean training
corrector, nearest training parameter), whether training read classical correctors, the
epochs and the training time, with the exact command of each run.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine

from dolfinx_lod.io import write_json

NETWORKS = {  # network -> extra train options
    "cnn:24x6": [],
    "reduced:16:32x3": [],
    "mlp:32x4": ["--epochs", "300"],
}


def run(network: str, extra: list[str], args: argparse.Namespace, folder: Path) -> dict:
    """Train one network with the CLI; its summary's numbers and the command."""
    out = folder / network.replace(":", "-")
    command = [
        "dolfinx-lod", "train", "--family", "cont", "--coarse", str(args.coarse),
        "--fine", str(args.fine), "--layers", "1", "--samples", str(args.samples),
        "--test-samples", str(args.test_samples), "--network", network, *extra,
    ]  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "dolfinx_lod.cli", *command[1:], "--out", str(out)], check=True
    )
    summary = json.loads((out / "summary.json").read_text())
    return {
        "command": " ".join(command + ["--out", "OUT"]),
        "network": network,
        "uses_corrector_data": summary["uses_corrector_data"],
        "basis_error_test": summary["basis_error_test"],
        "basis_error_train": summary["basis_error_train"],
        "baseline_errors_test": {
            k: v["energy"] for k, v in summary["baseline_errors_test"].items()
        },
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "settings": summary["settings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coarse", type=int, default=6)
    parser.add_argument("--fine", type=int, default=36)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--test-samples", type=int, default=25)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/lod-ann-example1.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(net, NETWORKS.get(net, []), args, Path(tmp)) for net in args.networks]
    write_json(args.out, {"machine": machine(), "ranks": 1, "runs": runs})
    for r in runs:
        base = ", ".join(f"{k} {v:.3f}" for k, v in r["baseline_errors_test"].items())
        print(
            f"{r['network']:>16}: held-out energy basis error {r['basis_error_test']:.3f} "
            f"({base}); corrector data {r['uses_corrector_data']}; {r['epochs']} epochs, "
            f"{r['train_seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()

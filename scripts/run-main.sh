#!/usr/bin/env bash
# The main job: LOD for the elliptic problem on the built-in rough coefficient, on 2 ranks.
# Results (summary.json, solution.npy, reference.npy, elliptic.png) go to results/elliptic/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
mpirun -n 2 dolfinx-lod elliptic --fine 128 --coarse 16 --layers 2 --out results/elliptic "$@"

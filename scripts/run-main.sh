#!/usr/bin/env bash
# The main job: the paper's Example 1 (--quick) on 2 MPI ranks: LOD-ANN corrector networks
# trained with Deep Ritz (cached after the first run), then LOD, LOD-ANN and a baseline in the
# backward Euler loop next to the fine FEM. Results (summary.json, figures) in results/example1/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
mpirun -n 2 python demos/example1.py --quick --out results/example1 "$@"

#!/usr/bin/env bash
# The whole test suite: ruff (lint + format check), pytest serially (with the rank-count
# invariance jobs under mpirun -n 1/2/3 as subprocesses), then the MPI-marked tests under
# mpirun -n 2. A failing rank aborts all ranks (python -m mpi4py + tests/conftest.py), and
# every stage has a time limit, so a broken test cannot hang CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
echo "== ruff (lint, format)"
ruff check dolfinx_lod tests bench demos
ruff format --check dolfinx_lod tests bench demos
echo "== pytest (serial)"
timeout 1200 python -m pytest -p no:cacheprovider --durations=15 "$@"
echo "== MPI-marked tests under mpirun -n 2"
timeout 900 mpirun -n 2 python -m mpi4py -m pytest -p no:cacheprovider -q -x -m mpi "$@"

#!/usr/bin/env bash
# The whole test suite: serially, then the MPI-marked tests under mpirun -n 2 and -n 3.
# A failing rank aborts all ranks (python -m mpi4py + tests/conftest.py), and every stage has
# a time limit, so a broken test cannot hang CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
timeout 1200 python -m pytest -p no:cacheprovider "$@"
for ranks in 2 3; do
    echo "== MPI-marked tests under mpirun -n $ranks"
    timeout 900 mpirun -n "$ranks" python -m mpi4py -m pytest -p no:cacheprovider -q -x -m mpi "$@"
done

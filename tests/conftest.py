import gc

import pytest
from mpi4py import MPI


def pytest_configure(config):
    """Under MPI every rank gets its own pytest base temp folder (no clean-up races); shared
    folders come from rank 0 through the ``tmp_dir`` fixture."""
    comm = MPI.COMM_WORLD
    if comm.size > 1 and not config.option.basetemp:
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix=f"pytest-rank{comm.rank}-")


@pytest.fixture(autouse=True)
def _collect_and_sync():
    """Run PETSc destructors on all ranks together after each test."""
    yield
    gc.collect()
    MPI.COMM_WORLD.Barrier()


@pytest.fixture(scope="session")
def comm():
    return MPI.COMM_WORLD


@pytest.fixture
def tmp_dir(tmp_path, comm):
    """A temporary folder shared by all ranks (rank 0's)."""
    return comm.bcast(tmp_path, root=0)


_failed_here = ""


def pytest_runtest_logreport(report):
    global _failed_here
    if report.failed:
        _failed_here += report.longreprtext + "\n"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under MPI, a test that fails on some ranks only would leave the others waiting in the
    next collective: after each test, abort all ranks if any rank failed."""
    global _failed_here
    _failed_here = ""
    yield
    comm = MPI.COMM_WORLD
    if comm.size > 1 and comm.allreduce(bool(_failed_here), op=MPI.LOR):
        if _failed_here:
            import sys

            print(f"\nrank {comm.rank}: {item.nodeid} failed:\n{_failed_here}", file=sys.stderr)
            sys.stderr.flush()
        comm.Abort(1)

"""The benchmark suite: ``python -m bench run CASE`` and ``python -m bench report``.

Cases are registered in :mod:`bench.cases`; every result JSON carries
:func:`bench.harness.provenance` (command, commit, library versions, threads, machine);
:mod:`bench.report` turns results into the tables of README.md and docs/.
"""

"""Command line ``dolfinx-lod`` (run under ``mpirun -n N`` for parallel runs).

One module per command (:mod:`.elliptic`, :mod:`.parabolic`, :mod:`.train`, :mod:`.operators`),
each with its ``add_parser`` and ``run``; shared option types in :mod:`.options`, input loading
and validation in :mod:`.inputs`, summary keys and console lines in :mod:`.output`, the entry
point and exit codes in :mod:`.app`.
"""

from dolfinx_lod.cli.app import main

__all__ = ["main"]

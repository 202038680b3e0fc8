"""``python -m dolfinx_lod.cli``: the ``dolfinx-lod`` command."""

import sys

from dolfinx_lod.cli.app import main

sys.exit(main())

"""Former home of the Deep Ritz training, split by job into
:mod:`~dolfinx_lod.neural.presets` (settings), :mod:`~dolfinx_lod.neural.losses`,
:mod:`~dolfinx_lod.neural.trainer`, :mod:`~dolfinx_lod.neural.checkpoints` and
:mod:`~dolfinx_lod.neural.reduced`. Kept only for the import of ``dolfinx_lod.cli``; to be
removed once the CLI imports :class:`TrainingSettings` from :mod:`~dolfinx_lod.neural.presets`.
"""

from dolfinx_lod.neural.presets import TrainingSettings

__all__ = ["TrainingSettings"]

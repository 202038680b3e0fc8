"""The paper's experiments (study code, not part of the library API).

Cached LOD-ANN training, time loops that compare the classical LOD, LOD-ANN and the baselines,
the summaries and figures of ``demos/example1.py`` and ``demos/example2.py``, and the problem
sizes of the paper's two examples (:mod:`dolfinx_lod.paper.examples`, also used by ``bench/``).
Library modules never import this package.
"""

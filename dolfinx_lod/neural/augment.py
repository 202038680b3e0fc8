"""Symmetry augmentation of the training patches: the 8 symmetries of the square.

An interior patch N^l(T) (no side on dOmega) is a square of (2l+1) r fine cells a side with T
at its centre. A symmetry g of the square (the dihedral group D_4: 4 rotations, 4 reflections)
maps it onto itself and the fine grid onto itself, so the patch problem of the coefficient
a o g^{-1} is the one of a, transformed: its stiffness is P S P^T, its element loads and its
correctors are those of a with the vertices permuted by g and the corners j of T permuted by g,

    C_T(a o g^{-1}) Lambda_{g(j)} = (C_T(a) Lambda_j) o g^{-1}.

:func:`augment_symmetries` appends the 7 transformed copies of every interior patch of a
:class:`~dolfinx_lod.neural.export.PatchBatch` (as extra patches, same samples) without any
new patch solve. Every permutation is a gather: ``new[v] = old[perm[v]]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from dolfinx_lod.neural.export import PatchBatch


def square_symmetries(points: int) -> list[npt.NDArray[np.int64]]:
    """The gathers of the 8 symmetries of a square of ``points`` x ``points`` points in
    lexicographic order (x fastest), identity first: ``new[v] = old[perm[v]]``."""
    index = np.arange(points * points).reshape(points, points)  # [y, x]
    out = []
    for flip in (False, True):
        base = index.T if flip else index
        out += [np.rot90(base, k).ravel().copy() for k in range(4)]
    return out


def _entry_gather(rows: npt.NDArray, cols: npt.NDArray, perm: npt.NDArray, N: int) -> npt.NDArray:
    """Index e' of (perm[rows[e]], perm[cols[e]]) in the CSR pattern (rows, cols) of one patch:
    the gather of the stiffness values P S P^T. ``ValueError`` if the pattern is not symmetric
    under ``perm``."""
    keys = rows * N + cols
    order = np.argsort(keys)
    wanted = perm[rows] * N + perm[cols]
    pos = np.searchsorted(keys[order], wanted)
    pos = np.minimum(pos, len(keys) - 1)
    if not np.array_equal(keys[order][pos], wanted):
        raise ValueError("the patch stiffness pattern is not symmetric under the square's group")
    return order[pos]


def _interior(batch: PatchBatch) -> list[int]:
    """Patches with no side on dOmega (square, T at the centre)."""
    return [g for g, c in enumerate(batch.configs) if not any(c.on_boundary)]


def augment_symmetries(batch: PatchBatch) -> PatchBatch:
    """``batch`` with the 7 non-trivial symmetric copies of each interior patch appended
    (module docstring): a, S, F, C, B transformed; cells, configurations, coordinates, hats,
    sizes and element energies (invariant) copied; a batch without interior patches is
    returned unchanged. 2D only: ``ValueError`` for 3D patches (the 48 symmetries of the cube
    are not implemented)."""
    if batch.coords.shape[-1] != 2:
        raise ValueError(
            "the symmetry augmentation has the 8 symmetries of the square (2D patches); got "
            f"{batch.coords.shape[-1]}D patches"
        )
    interior = _interior(batch)
    if not interior:
        return batch
    r = int(round(np.sqrt(batch.Pi.shape[1]))) - 1
    side = (2 * batch.layers + 1) * r
    cell_perms = square_symmetries(side)[1:]
    vert_perms = square_symmetries(side + 1)[1:]
    corner_perms = square_symmetries(2)[1:]
    G, _, N = batch.shape
    m = batch.B.shape[0] // max(G, 1)
    (b_rows, b_cols), b_vals = batch.B.indices(), batch.B.values()
    parts: dict[str, list] = {k: [] for k in ("a", "S", "F", "C", "B", "g")}
    for g in interior:
        nnz, n = int(batch.num_entries[g]), int(batch.num_vertices[g])
        rows, cols = batch.rows[g, :nnz].numpy(), batch.cols[g, :nnz].numpy()
        for pc, pv, pj in zip(cell_perms, vert_perms, corner_perms, strict=True):
            pv_t, pj_t = torch.from_numpy(pv), torch.from_numpy(pj)
            S = batch.S[g].clone()
            S[:, :nnz] = batch.S[g][:, torch.from_numpy(_entry_gather(rows, cols, pv, n))]
            parts["S"].append(S)
            parts["a"].append(torch.cat([batch.a[g][:, pc], batch.a[g][:, pc.size :]], 1))
            for key in ("F", "C"):
                x = getattr(batch, key)
                if x is not None:
                    y = x[g].clone()
                    y[:, :n] = x[g][:, pv_t][:, :, pj_t]
                    parts[key].append(y)
            inverse = torch.from_numpy(np.argsort(pv))  # B'[:, v] = B[:, pv[v]]
            mine = (b_rows // m) == g
            parts["B"].append((b_rows[mine] % m, inverse[b_cols[mine] % N], b_vals[mine]))
            parts["g"].append(g)
    return _appended(batch, parts)


def _appended(batch: PatchBatch, parts: dict[str, list]) -> PatchBatch:
    """``batch`` with the new patches of ``parts`` (copies of the patches ``parts["g"]`` with
    the transformed a, S, F, C and the B blocks as local (rows, cols, values)) appended."""
    G, _, N = batch.shape
    src = torch.tensor(parts["g"], dtype=torch.int64)
    m = batch.B.shape[0] // max(G, 1)
    total = G + len(src)
    (rows, cols), vals = batch.B.indices(), batch.B.values()
    rows, cols, vals = [rows], [cols], [vals]
    for i, (r, c, v) in enumerate(parts["B"]):
        rows.append(r + (G + i) * m)
        cols.append(c + (G + i) * N)
        vals.append(v)
    B = torch.sparse_coo_tensor(
        torch.stack([torch.cat(rows), torch.cat(cols)]),
        torch.cat(vals),
        (total * m, total * N),
        check_invariants=True,
    ).coalesce()

    def stack(key: str) -> torch.Tensor:
        return torch.cat([getattr(batch, key), torch.stack(parts[key])])

    def copy(key: str) -> torch.Tensor:
        x = getattr(batch, key)
        return torch.cat([x, x[src]])

    return PatchBatch(
        cells=np.concatenate([batch.cells, batch.cells[src.numpy()]]),
        configs=list(batch.configs) + [batch.configs[g] for g in parts["g"]],
        coords=copy("coords"),
        hats=copy("hats"),
        num_vertices=np.concatenate([batch.num_vertices, batch.num_vertices[src.numpy()]]),
        num_entries=np.concatenate([batch.num_entries, batch.num_entries[src.numpy()]]),
        rows=copy("rows"),
        cols=copy("cols"),
        S=stack("S"),
        F=stack("F"),
        B=B,
        C=None if batch.C is None else stack("C"),
        a=stack("a"),
        energy=copy("energy"),
        layers=batch.layers,
        Pi=batch.Pi,
        cell=batch.cell,
    )

"""TFLite's sparse tensors made dense: what its ``DENSIFY`` operator does, once, at conversion.

A sparse constant (TFLite's ``SparsityParameters``, a variant of the TACO format) stores only
its non-zero values, in the order of a walk over its dimensions:

- ``traversal_order``: the order the walk visits the dimensions. For an n-D tensor with a
  k-D block (0 ≤ k ≤ n) it has n + k entries: a permutation of the n tensor dimensions, then
  one of the k block dimensions (n … n+k-1);
- ``block_map``: for each block dimension, the tensor dimension it splits (empty: no block);
- ``dim_metadata``: one per walk level, in walk order: ``DENSE`` (every index 0 … size-1 is
  visited) or ``SPARSE_CSR`` (only the indices ``array_indices[array_segments[p] :
  array_segments[p + 1]]`` under parent position p, compressed sparse row style).

A position counts the entries of its level in walk order, so the last level's positions are
the stored values' own indices. A tensor dimension split by a block is the block's index
times the block's size plus the index inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DENSE, SPARSE_CSR = 0, 1  # TFLite's DimensionType


@dataclass(frozen=True)
class Level:
    """One level of the walk: ``DENSE`` with its size, or ``SPARSE_CSR`` with its two arrays."""

    format: int
    dense_size: int = 0
    segments: np.ndarray | None = None
    indices: np.ndarray | None = None


class SparsityError(ValueError):
    """Sparsity parameters that do not describe the tensor they belong to."""


def densify(
    values: np.ndarray,
    shape: list[int],
    traversal_order: list[int],
    block_map: list[int],
    levels: list[Level],
) -> np.ndarray:
    """The dense tensor of ``shape`` whose non-zero ``values`` the sparsity parameters place."""
    n, k = len(shape), len(block_map)
    if sorted(traversal_order[:n]) != list(range(n)) or sorted(traversal_order[n:]) != list(
        range(n, n + k)
    ):
        raise SparsityError(f"traversal order {traversal_order} is not one of {n}+{k} dimensions")
    if len(levels) != n + k:
        raise SparsityError(f"{len(levels)} dimension entries for {n + k} walk levels")
    sizes = _level_sizes(shape, traversal_order, block_map, levels)
    positions = np.zeros(1, np.int64)
    coords = np.zeros((1, 0), np.int64)
    for level, size in zip(levels, sizes, strict=True):
        if level.format == DENSE:
            steps = np.arange(size)
            coords = np.concatenate(
                [np.repeat(coords, size, axis=0), np.tile(steps, len(positions))[:, None]], axis=1
            )
            positions = (positions[:, None] * size + steps).reshape(-1)
        elif level.format == SPARSE_CSR:
            positions, index = _sparse_level(level, positions, size)
            coords = np.concatenate([coords[index], level.indices[positions][:, None]], axis=1)
        else:
            raise SparsityError(f"dimension format {level.format} is neither DENSE nor SPARSE_CSR")
    if len(positions) != values.size or not np.array_equal(positions, np.arange(values.size)):
        raise SparsityError(
            f"the walk places {len(positions)} values, the tensor stores {values.size}"
        )
    dense = np.zeros(shape, values.dtype)
    dense[_tensor_index(coords, shape, traversal_order, block_map, sizes)] = values.reshape(-1)
    return dense


def _level_sizes(
    shape: list[int], order: list[int], block_map: list[int], levels: list[Level]
) -> list[int]:
    """The size of each walk level: a tensor dimension (divided by its block), or a block's."""
    n = len(shape)
    blocks = {block_map[d - n]: levels[i].dense_size for i, d in enumerate(order) if d >= n}
    sizes = []
    for level, d in zip(levels, order, strict=True):
        if d >= n:
            size = level.dense_size
        elif shape[d] % blocks.get(d, 1):
            raise SparsityError(f"dimension {d} ({shape[d]}) is not a multiple of its block")
        else:
            size = shape[d] // blocks.get(d, 1)
        if level.format == DENSE and level.dense_size != size:
            raise SparsityError(f"a dense level says size {level.dense_size}, the tensor {size}")
        if size <= 0:
            raise SparsityError(f"a walk level of size {size}")
        sizes.append(size)
    return sizes


def _sparse_level(level: Level, parents: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """This level's positions, and for each the index of its parent among ``parents``."""
    seg, idx = level.segments, level.indices
    if seg is None or idx is None or len(seg) != len(parents) + 1 or seg[0] != 0:
        raise SparsityError("a sparse level's segments do not match the level above it")
    counts = np.diff(seg)
    if (counts < 0).any() or seg[-1] != len(idx):
        raise SparsityError("a sparse level's segments are not increasing up to its index count")
    if len(idx) and (idx.min() < 0 or idx.max() >= size):
        raise SparsityError(f"a sparse level's indices leave 0..{size - 1}")
    return np.arange(seg[-1]), np.repeat(np.arange(len(parents)), counts)


def _tensor_index(
    coords: np.ndarray, shape: list[int], order: list[int], block_map: list[int], sizes: list[int]
) -> tuple[np.ndarray, ...]:
    """Walk coordinates (values, n+k) to the tensor's index arrays, blocks folded back in."""
    n = len(shape)
    at = {d: coords[:, i] for i, d in enumerate(order)}
    size_of = dict(zip(order, sizes, strict=True))
    index = [at[d].copy() for d in range(n)]
    for j, d in enumerate(block_map):
        index[d] = index[d] * size_of[n + j] + at[n + j]
    return tuple(index)

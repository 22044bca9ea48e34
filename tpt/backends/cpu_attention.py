"""Decode attention on the CPU, float32: one query per row and query head against that row's own keys and values up
to its own length, compiled by numba.

torch's CPU flash kernel, given one query per row, ran its skinny products at ~9 GFLOP/s, and a batch of rows
attends up to the longest row, the shorter rows' tails masked: on an AVX2-only CPU attention was a third of a
decode step (docs/benchmarks.md). Here each (row, key/value head) is one task that reads its keys and values once
for all the query heads that share them, up to the row's own length. A row's output is a function of that row
alone, whatever the rows beside it, their lengths, or the thread count: the arithmetic of a task is fixed by its
length.
"""
import numba
import numpy as np


def decode_attention(query, keys, values, lengths, scale, out):
    """out[r, i] = softmax(scale * keys[r, j, :n] . query[r, i]) @ values[r, j, :n] for query head i, its key/value
    head j = i // (heads / kv heads) and n = lengths[r]. query [rows, heads, dim], keys and values [rows or more, kv
    heads, positions, dim], lengths [rows] (int64), out [rows, heads, dim]: float32 CPU tensors, query, keys, values
    and out contiguous; out is written in place."""
    _attend(query.numpy(), keys.numpy(), values.numpy(), lengths.numpy(), np.float32(scale), out.numpy())


@numba.njit(parallel=True, fastmath=True, cache=True)
def _attend(query, keys, values, lengths, scale, out):
    rows, heads, dim = query.shape
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    for task in numba.prange(rows * kv_heads):
        r = task // kv_heads
        h = task - r * kv_heads
        n = lengths[r]
        scores = np.empty((groups, n), dtype=np.float32)
        for j in range(n):  # each key read once for the query heads that share it
            for g in range(groups):
                s = np.float32(0.0)
                for d in range(dim):
                    s += query[r, h * groups + g, d] * keys[r, h, j, d]
                scores[g, j] = s * scale
        acc = np.empty(dim, dtype=np.float32)
        for g in range(groups):
            top = scores[g, 0]
            for j in range(1, n):
                top = max(top, scores[g, j])
            total = np.float32(0.0)
            acc[:] = np.float32(0.0)
            for j in range(n):
                p = np.exp(scores[g, j] - top)
                total += p
                for d in range(dim):
                    acc[d] += p * values[r, h, j, d]
            for d in range(dim):
                out[r, h * groups + g, d] = acc[d] / total

"""Checks the agent tests share: bitwise tree equality and a batched run driven chunk by chunk from the host."""

import jax
import numpy as np

from jaxrl_suite import config as cfg_lib
from jaxrl_suite import training


def assert_trees_equal(a, b):
    """Every leaf of `a` equals the matching leaf of `b` bitwise (the trees must have the same structure)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def run_in_chunks(make_train, config, num_seeds=2):
    """(initial state, final state, metrics) of `num_seeds` vmapped seeds run one `update` chunk at a time."""
    static, batch = cfg_lib.make_batch(config, num_seeds)
    bt = training.batched(make_train(static))
    state = bt.init(batch.keys, batch.hyper)
    initial = state
    chunks = []
    for _ in range(static.num_chunks):
        state, metrics = bt.update(state)
        chunks.append(metrics)
    return initial, state, training.concat_metrics(chunks)

"""The speed-motivated parts of the env step keep their semantics.

- A step splits its key with one threefry call (`split_with_bits`); the auto-reset draws from its
  key only when an episode ends (`cond_any`); words turned into floats follow jax.random's own
  laws, bit for bit.
- The twin's continuous random actions are still uniform in the action box.
- A pixel frame's fused loop does not repeat the distractor's random draw per pixel (the cause of
  `color` frames being 30x slower on CPU, fixed by `render.materialize`), and materialize is exact.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_suite.envs import make, render
from jaxrl_suite.envs.core import normal_from_bits, split_with_bits, uniform_from_bits


def test_floats_from_bits_are_jax_randoms_from_the_same_key():
    # both jitted: XLA contracts a * b + c into one fused multiply-add, eager op-by-op does not
    key = jax.random.key(4)
    bits = jax.random.bits(key, (1000,), jnp.uint32)
    ours = jax.jit(lambda b: (uniform_from_bits(b, -0.1, 0.1), normal_from_bits(b)))(bits)
    theirs = jax.jit(lambda k: (jax.random.uniform(k, (1000,), minval=-0.1, maxval=0.1), jax.random.normal(k, (1000,))))(key)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_split_with_bits_is_deterministic_and_its_keys_are_independent_streams():
    keys, words = split_with_bits(jax.random.key(1), 3, 5)
    keys2, words2 = split_with_bits(jax.random.key(1), 3, 5)
    assert keys.shape == (3,) and words.shape == (5,) and words.dtype == jnp.uint32
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(keys2))
    np.testing.assert_array_equal(words, words2)
    draws = np.stack([np.asarray(jax.random.normal(k, (4000,))) for k in keys])
    corr = np.corrcoef(draws)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.06  # independent streams
    assert np.abs(draws.std(axis=1) - 1.0).max() < 0.05
    # a legacy raw uint32 key works too, and gives the same draw as its typed twin
    raw_keys, raw_words = split_with_bits(jax.random.PRNGKey(1), 3, 5)
    np.testing.assert_array_equal(raw_words, words)
    np.testing.assert_array_equal(jax.random.key_data(raw_keys), jax.random.key_data(keys))


def test_split_with_bits_keeps_the_key_implementation():
    key = jax.random.key(0, impl="rbg")
    keys, words = split_with_bits(key, 2, 3)
    assert str(jax.random.key_impl(keys)) == str(jax.random.key_impl(key))
    assert jax.random.key_data(keys).shape == (2, 4) and words.shape == (3,)


def test_step_auto_reset_draws_the_reset_from_the_steps_randomness():
    env, params = make("cartpole-balance")
    params = params.replace(max_steps_in_episode=1)  # every step ends the episode
    _, state = env.reset(jax.random.key(0), params)
    key = jax.random.key(5)
    _, next_state, _, _, truncated, _ = env.step(key, state, jnp.zeros((1,)), params)
    assert bool(truncated)
    expected = jax.jit(lambda k: env.task.reset(env.step_randomness(k)[2], params.task))(key)
    # another program, so XLA may fuse the arithmetic differently: equal to float rounding
    np.testing.assert_allclose(next_state.endo.qpos, expected.qpos, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(next_state.endo.qvel, expected.qvel, rtol=1e-6, atol=1e-9)
    assert int(next_state.time) == 0


def test_twin_random_actions_are_uniform_in_the_box_when_uncorrelated():
    env, params = make("cartpole-balance", distractor="twin", difficulty="easy")  # easy: rho = 0
    assert float(params.distractor.rho) == 0.0
    exo = env.distractor.init(jax.random.key(0), params.distractor)
    step = jax.jit(lambda k, e: env.distractor.step(k, e, params.distractor))
    actions = []
    for k in jax.random.split(jax.random.key(1), 3000):
        exo = step(k, exo)
        actions.append(float(exo.action[0, 0]))
    actions = np.asarray(actions)
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert abs(actions.mean()) < 0.04 and abs(actions.std() - 1.0 / np.sqrt(3.0)) < 0.03  # U(-1, 1)
    assert abs(np.corrcoef(actions[:-1], actions[1:])[0, 1]) < 0.06  # fresh every step at rho = 0


def test_materialize_is_exact_and_keeps_dtypes():
    tree = {"a": jnp.array([1.5, -2.25, 3e-8, -0.0]), "b": jnp.array([[7.0]]), "i": jnp.array([3, 4], jnp.int32)}
    out = render.materialize(tree)
    np.testing.assert_array_equal(out["a"], tree["a"])
    np.testing.assert_array_equal(out["b"], tree["b"])
    assert out["i"].dtype == jnp.int32 and out["b"].shape == (1, 1)
    np.testing.assert_array_equal(out["i"], tree["i"])


def _frame_fusions(hlo: str, size: int) -> list[str]:
    """Bodies of the fused computations whose output is a batch of uint8 frames."""
    bodies = []
    for line in hlo.splitlines():
        if re.search(rf"= u8\[\d+,{size},{size},3\]\S* fusion\(", line):
            name = re.search(r"calls=%([^,\s}]+)", line).group(1)
            start = hlo.index(f"%{name} ")
            bodies.append(hlo[start : hlo.index("\n}", start)])
    return bodies


SIZE = 16


def test_frame_loop_does_not_repeat_the_distractors_random_draw():
    # checked without render.materialize: this fails, the colour walk's erfinv sits in every pixel's loop
    env, params = make("cartpole-balance", obs="pixels", distractor="color", difficulty="hard", image_size=SIZE)
    n = 4
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), n), params)
    # params closed over (constants), as training loops and the bench hold them: that is when XLA fused
    # the draw into the frame loop
    step = jax.vmap(lambda k, s, a: env.step(k, s, a, params))
    hlo = jax.jit(step).lower(jax.random.split(jax.random.key(1), n), states, jnp.zeros((n, 1))).compile().as_text()
    bodies = _frame_fusions(hlo, SIZE)
    assert bodies  # the frames are fused loops
    for body in bodies:
        # random words become floats by a logical shift right; none may happen per pixel
        assert "shift-right-logical" not in body


@pytest.mark.parametrize("name", ["cartpole-swingup", "pendulum-swingup", "acrobot-swingup", "reacher-easy", "point-mass-easy", "exo-gridworld"])
def test_tasks_flagged_deterministic_never_draw_from_their_step_key(name):
    # stochastic_step=False lets the env skip making the task's key; the flag must be true to the task
    env, params = make(name)
    endo = env.task.reset(jax.random.key(0), params.task)
    action = env.action_space(params).sample(jax.random.key(1))
    outs = jax.jit(jax.vmap(lambda k: env.task.step(k, endo, action, params.task)))(jax.random.split(jax.random.key(2), 64))
    differs = any(bool((np.asarray(leaf) != np.asarray(leaf)[:1]).any()) for leaf in jax.tree.leaves(outs))
    assert differs == env.task.stochastic_step  # the slippery gridworld does draw (64 keys: some slip)


def test_cond_any_branches_once_for_a_batch_and_selects_per_member():
    from jaxrl_suite.envs.core import cond_any

    taken = []

    def expensive(x):
        jax.debug.callback(lambda: taken.append(1))
        return x * 10.0

    def branch(pred, x):
        return cond_any(pred, expensive, lambda x: x + 1.0, x)

    x = jnp.arange(4.0).reshape(2, 2)
    nested = jax.jit(jax.vmap(jax.vmap(branch)))
    out = nested(jnp.array([[True, False], [False, False]]), x)
    np.testing.assert_array_equal(out, [[0.0, 2.0], [3.0, 4.0]])  # per member: x * 10 where pred, else x + 1
    assert len(taken) == 1  # one batched call of the expensive branch for the whole (nested) batch
    taken.clear()
    np.testing.assert_array_equal(nested(jnp.zeros((2, 2), bool), x), x + 1.0)
    assert not taken  # no member's pred holds: the expensive branch does not run at all
    # unbatched operands and predicates, and no vmap at all, agree with lax.cond
    np.testing.assert_array_equal(jax.vmap(branch, in_axes=(0, None))(jnp.array([True, False]), jnp.float32(3.0)), [30.0, 4.0])
    np.testing.assert_array_equal(jax.vmap(branch, in_axes=(None, 0))(jnp.array(True), x[0]), [0.0, 10.0])
    assert float(branch(jnp.array(False), 2.0)) == 3.0

"""The training-loop contract (jaxrl_suite.training) pinned on tiny PPO runs.

Chunking is exact, a batch layout is bitwise reproducible, a seed alone and in a batch agree to
float tolerance, a diverging member is frozen and flagged without touching the others, metrics
carry the member axis, and bad configs fail before compiling.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gymnax
from jaxrl_suite import agents, config as cfg_lib, ppo, training
import jaxrl_suite.envs  # noqa: F401  (its jitted methods are decorated at import; the no-compile test patches jax.jit)
from trainer_helpers import assert_trees_equal

gymnax.make("CartPole-v1")  # likewise for gymnax's env modules

TINY = ppo.PPOConfig(
    env="cartpole-balance", action_repeat=8, num_envs=4, num_steps=16, update_epochs=1, num_minibatches=2,
    hidden_sizes=(16, 16), num_updates=8, eval_every=1, evals_per_chunk=2, eval_episodes=2, learning_rate=1e-3,
    normalize_obs=True, normalize_reward=True,
)


def _max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) if np.asarray(x).size else 0.0
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@functools.lru_cache(maxsize=None)
def _run_chunks_cached(config, num_seeds, overrides_items):
    overrides = [dict(o) for o in overrides_items] if overrides_items is not None else None
    return _run_chunks_uncached(config, num_seeds, overrides)


def _run_chunks(config, num_seeds=2, overrides=None):
    """Chunked batched run; cached so tests sharing a layout compile and run it once."""
    key = tuple(tuple(sorted(o.items())) for o in overrides) if overrides is not None else None
    return _run_chunks_cached(config, num_seeds, key)


def _run_chunks_uncached(config, num_seeds=2, overrides=None):
    static, batch = cfg_lib.make_batch(config, num_seeds, overrides)
    bt = training.batched(ppo.make_train(static))
    state = bt.init(batch.keys, batch.hyper)
    chunks = []
    for _ in range(static.num_chunks):
        state, metrics = bt.update(state)
        chunks.append(metrics)
    return state, training.concat_metrics(chunks)


def test_chunked_updates_equal_single_program_bitwise():
    static, batch = cfg_lib.make_batch(TINY, 2)
    one_program = training.batched(ppo.make_train(dataclasses.replace(static, evals_per_chunk=8)))
    state_single, metrics_single = one_program.train(batch.keys, batch.hyper)
    state_chunked, metrics_chunked = _run_chunks(TINY)  # 4 chunks of 2
    assert metrics_single["return_mean"].shape == metrics_chunked["return_mean"].shape == (2, 8)
    assert_trees_equal(state_single, state_chunked)
    assert_trees_equal(metrics_single, metrics_chunked)
    assert int(state_chunked.step[0]) == 8


def test_same_key_and_layout_is_bitwise_reproducible():
    a = _run_chunks(TINY)
    b = _run_chunks_uncached(TINY)
    assert_trees_equal(a, b)


def test_seed_alone_matches_seed_in_batch_of_8_to_tolerance():
    small = dataclasses.replace(TINY, num_updates=4, evals_per_chunk=4)
    alone, m_alone = _run_chunks(small, num_seeds=1)
    batch8, m_batch = _run_chunks(small, num_seeds=8)
    first = jax.tree.map(lambda x: x[:1], (batch8.agent.params, m_batch))
    param_diff = _max_abs_diff(alone.agent.params, first[0])
    print(f"alone vs batch of 8 after 4 updates: max |param diff| {param_diff:.3g}")
    # measured 3e-8 (float32 rounding from XLA's batched reductions); eval returns then drift by
    # ~1e-2 of ~650 because 125 chaotic steps amplify it, hence relative tolerances below
    assert param_diff < 1e-5
    for name in ("loss", "value_loss", "entropy", "return_mean"):
        np.testing.assert_allclose(m_alone[name], first[1][name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_exploding_learning_rate_freezes_only_that_member():
    overrides = [{"learning_rate": 1e-3}, {"learning_rate": 1e6}, {"learning_rate": 3e-3}]
    state, metrics = _run_chunks(TINY, num_seeds=1, overrides=overrides)
    assert metrics["diverged"].shape == (3, 8)
    assert not bool(metrics["diverged"][0].any()) and not bool(metrics["diverged"][2].any())
    assert bool(metrics["diverged"][1, -1])
    assert bool(training.all_finite(jax.tree.map(lambda x: x[1], state.agent)))  # frozen at its last finite state
    good_state, good_metrics = _run_chunks(TINY, num_seeds=1, overrides=[overrides[0], overrides[2]])
    keep = np.array([0, 2])
    # batch sizes 3 vs 2 differ in layout, so not bitwise: tolerance as for alone-vs-batch
    param_diff = _max_abs_diff(jax.tree.map(lambda x: x[keep], state.agent.params), good_state.agent.params)
    print(f"healthy members with vs without the diverging one: max |param diff| {param_diff:.3g}")
    assert param_diff < 1e-5
    # a 1e-6 parameter difference moves a 1000-step evaluation episode's return and a minibatch loss by
    # up to ~1e-4 / 6e-4 relative (measured: 1.3e-4 on a return of 700, 9e-5 on a loss of 0.14): the
    # bounds sit far below real interference (a diverged member's NaNs or shared state move them by units)
    np.testing.assert_allclose(metrics["return_mean"][keep], good_metrics["return_mean"], rtol=5e-4)
    np.testing.assert_allclose(metrics["loss"][keep], good_metrics["loss"], rtol=2e-3, atol=2e-4)


def test_frozen_member_keeps_its_parameters():
    # same shapes as the batch-of-2 runs above, so the compiled chunk is reused
    static, batch = cfg_lib.make_batch(TINY, 1, [{"learning_rate": 1e6}, {"learning_rate": 1e-3}])
    bt = training.batched(ppo.make_train(static))
    state = bt.init(batch.keys, batch.hyper)
    for _ in range(static.num_chunks):
        state, metrics = bt.update(state)
        if bool(state.diverged[0]):
            break
    assert bool(state.diverged[0]) and not bool(state.diverged[1])
    before = state.agent
    state, _ = bt.update(state)
    assert_trees_equal(jax.tree.map(lambda x: x[0], before), jax.tree.map(lambda x: x[0], state.agent))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a[1] != b[1])), before.params, state.agent.params)
    assert any(jax.tree.leaves(changed))  # the healthy member kept learning


def test_metrics_have_leading_member_axis_and_expected_names():
    state, metrics = _run_chunks(TINY, num_seeds=3)
    for name in ("step", "env_steps", "return_mean", "return_std", "episode_length", "diverged", "loss", "value_loss", "policy_loss", "entropy", "train_return"):
        assert metrics[name].shape == (3, 8), name
    np.testing.assert_array_equal(metrics["step"][0], np.arange(1, 9))
    np.testing.assert_array_equal(metrics["env_steps"][0], np.arange(1, 9) * 4 * 16)
    assert metrics["episode_length"].max() <= 125  # 1000 physics steps / action_repeat 8
    assert state.step.shape == (3,)


def test_sweep_batch_layout():
    static, batch = cfg_lib.make_batch(TINY, 2, [{"learning_rate": 1e-3}, {"learning_rate": 1e-2, "gamma": 0.9}])
    assert batch.size == 4 and batch.keys.shape == (4, 2)
    np.testing.assert_allclose(batch.hyper["learning_rate"], [1e-3, 1e-3, 1e-2, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(batch.hyper["gamma"], [0.99, 0.99, 0.9, 0.9], rtol=1e-6)
    assert [m["seed"] for m in batch.members] == [0, 1, 0, 1]
    assert "num_envs" not in batch.hyper and "learning_rate" in cfg_lib.sweepable_fields(ppo.PPOConfig)


def test_evaluate_reproduces_last_in_scan_evaluation():
    static, batch = cfg_lib.make_batch(TINY, 2)
    bt = training.batched(ppo.make_train(static))
    state, metrics = bt.update(bt.init(batch.keys, batch.hyper))
    again = bt.evaluate(state)
    np.testing.assert_allclose(again["return_mean"], metrics["return_mean"][:, -1], rtol=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_steps": -3}, "num_steps"),
        ({"num_envs": 3, "num_steps": 5, "num_minibatches": 2}, "divisible"),
        ({"num_updates": 10, "eval_every": 3}, "multiple"),
        ({"eval_episodes": 0}, "eval_episodes"),
        ({"hidden_sizes": (16, 0)}, "hidden_sizes"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"env": "cartpole-upside-down"}, "unknown env"),
        ({"distractor": "ghosts"}, "unknown distractor"),
        ({"env": "gymnax:NotAnEnv-v0"}, "unknown gymnax env"),
        ({"obs": "pixels", "normalize_obs": True}, "normalize_obs"),
    ],
)
def test_bad_config_raises_before_compiling(changes, message, monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ValueError, match=message):
        ppo.make_train(dataclasses.replace(TINY, **changes))


def test_bad_sweep_and_agent_names_raise():
    with pytest.raises(ValueError, match="not sweepable"):
        cfg_lib.make_batch(TINY, 2, [{"num_envs": 8}])
    with pytest.raises(ValueError, match="num_seeds"):
        cfg_lib.make_batch(TINY, 0)
    with pytest.raises(ValueError, match=r"unknown agent 'dqn-ish'; valid: \[.*'ppo'"):
        agents.get("dqn-ish")
    with pytest.raises(ValueError, match="learning_rate"):
        cfg_lib.make_batch(TINY, 1, [{"learning_rate": 0.0}])


def test_action_space_check_rejects_discrete_only_agent_on_continuous_env():
    from jaxrl_suite import rollout

    env, params = rollout.make_env(TINY)
    with pytest.raises(ValueError, match=r"agent 'dqn' supports \['discrete'\] actions, but env 'cartpole-balance-v1' has continuous"):
        rollout.check_action_space(env, params, "dqn", ("discrete",))
    assert rollout.check_action_space(env, params, "ppo", rollout.ACTION_KINDS) == "continuous"


def test_all_finite_and_tree_where():
    assert bool(training.all_finite({"a": jnp.ones(3), "b": jnp.arange(3)}))
    assert not bool(training.all_finite({"a": jnp.array([1.0, jnp.nan])}))
    assert not bool(training.all_finite([jnp.array(jnp.inf)]))
    picked = training.tree_where(jnp.asarray(False), {"x": jnp.zeros(2)}, {"x": jnp.ones(2)})
    np.testing.assert_array_equal(picked["x"], np.ones(2))

"""World-model agents (jaxrl_suite.world_models): the pieces pinned on values, the agents on tiny runs.

Fast: symlog/symexp and two-hot are exact inverses, lambda-returns match a hand computation,
the RSSM's shapes and free-bits clamp, the imagination rollout's shapes, the cube mask's
space-time structure, Dreamer and the robust variant train under vmap over 2 members with
finite metrics (the robust run also reporting the probe of its RSSM features), the probe's
features filter sequences and restart at episode starts, chunked updates equal the one-program
run bitwise, bad configs fail before compiling. Slow: the small CPU preset learns
cartpole-balance from state clearly above random (1.5 x the random reference, both of 2 seeds).
"""

import dataclasses
import functools
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_suite import agents, losses, references, training
from jaxrl_suite import config as cfg_lib
from jaxrl_suite.world_models import dreamer, robust
from jaxrl_suite.world_models.rssm import RSSM, imagine, initial_state, kl_losses, observe
from trainer_helpers import assert_trees_equal, run_in_chunks

TINY = dreamer.DreamerConfig(
    env="cartpole-balance", action_repeat=8, num_envs=2, collect_steps=4, train_steps=1, batch_size=4, seq_len=6,
    replay_capacity=48, prefill=8, deter_size=16, stoch_size=4, classes=4, hidden=16, layers=1, num_bins=31, horizon=3,
    num_updates=4, eval_every=1, evals_per_chunk=2, eval_episodes=2,
)
TINY_ROBUST = robust.from_dreamer(TINY)


# ---------------------------------------------------------------- symlog, two-hot, lambda-returns


def test_symexp_inverts_symlog_over_many_magnitudes():
    x = jnp.asarray([-1e6, -123.4, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 42.0, 1e6], jnp.float32)
    np.testing.assert_allclose(losses.symexp(losses.symlog(x)), x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses.symlog(losses.symexp(x[2:-2])), x[2:-2], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(losses.symlog(jnp.asarray([np.e - 1.0, -(np.e - 1.0)])), [1.0, -1.0], rtol=1e-6)


def test_two_hot_encode_decode_round_trip_and_neighbour_weights():
    bins = losses.symexp_bins(255)
    assert bins.shape == (255,) and float(bins[127]) == 0.0 and float(bins[0]) == -float(bins[-1])
    values = jnp.asarray([0.0, 0.3, -2.5, 17.0, 1234.5, -1e5, 3e7], jnp.float32)
    encoded = losses.two_hot(values, bins)
    chex.assert_shape(encoded, (7, 255))
    np.testing.assert_allclose(jnp.sum(encoded, -1), 1.0, rtol=1e-6)
    assert int(jnp.max(jnp.sum(encoded > 0, -1))) <= 2  # at most two neighbouring bins carry weight
    np.testing.assert_allclose(jnp.sum(encoded * bins, -1), values, rtol=1e-6)
    # decoding through the head's softmax mean recovers the value from log two-hot logits
    np.testing.assert_allclose(losses.two_hot_mean(jnp.log(encoded + 1e-30), bins), values, rtol=1e-5)
    # beyond the last bin all weight sits on it
    np.testing.assert_allclose(losses.two_hot(jnp.float32(1e10), bins)[-1], 1.0)


def test_two_hot_mean_of_uniform_logits_is_exactly_zero():
    # the zero-initialised heads must predict 0, not float32 cancellation noise of +-5e8 bins
    for n in (31, 255, 256):
        assert float(losses.two_hot_mean(jnp.zeros((n,)), losses.symexp_bins(n))) == 0.0


def test_lambda_returns_match_hand_computation():
    rewards = jnp.asarray([[1.0], [2.0], [0.5]])
    continues = jnp.asarray([[0.9], [0.5], [0.8]])
    values = jnp.asarray([[3.0], [4.0], [6.0]])  # V(s_1), V(s_2), V(s_3)
    lam = 0.5
    r2 = 0.5 + 0.8 * (0.5 * 6.0 + 0.5 * 6.0)  # R_3 = V(s_3)
    r1 = 2.0 + 0.5 * (0.5 * 4.0 + 0.5 * r2)
    r0 = 1.0 + 0.9 * (0.5 * 3.0 + 0.5 * r1)
    out = losses.lambda_returns(rewards, values, continues, values[-1], lam)
    np.testing.assert_allclose(out[:, 0], [r0, r1, r2], rtol=1e-6)
    # lambda = 0 is one-step TD, lambda = 1 the discounted Monte Carlo return bootstrapped at the end
    np.testing.assert_allclose(losses.lambda_returns(rewards, values, continues, values[-1], 0.0)[:, 0], rewards[:, 0] + continues[:, 0] * values[:, 0], rtol=1e-6)
    mc2 = 0.5 + 0.8 * 6.0
    mc1 = 2.0 + 0.5 * mc2
    np.testing.assert_allclose(losses.lambda_returns(rewards, values, continues, values[-1], 1.0)[:, 0], [1.0 + 0.9 * mc1, mc1, mc2], rtol=1e-6)


# ---------------------------------------------------------------- RSSM


@functools.lru_cache(maxsize=None)
def _rssm_and_params(deter=8, stoch=3, classes=5, hidden=8, embed=6, action=2):
    rssm = RSSM(deter, stoch, classes, hidden)
    params = rssm.init(jax.random.PRNGKey(0), initial_state((1,), deter, stoch, classes), jnp.zeros((1, action)), jnp.zeros((1, embed)), jax.random.PRNGKey(1))
    return rssm, params


def test_rssm_observe_shapes_one_hot_samples_and_unimix():
    rssm, params = _rssm_and_params()
    steps, batch = 5, 3
    embeds = jax.random.normal(jax.random.PRNGKey(2), (steps, batch, 6))
    actions = jax.random.normal(jax.random.PRNGKey(3), (steps, batch, 2))
    posts, priors = jax.jit(lambda e, a: observe(rssm, params, e, a, jax.random.PRNGKey(4)))(embeds, actions)
    for state in (posts, priors):
        chex.assert_shape(state.deter, (steps, batch, 8))
        chex.assert_shape(state.stoch, (steps, batch, 3, 5))
        chex.assert_shape(state.logits, (steps, batch, 3, 5))
        chex.assert_shape(state.feat, (steps, batch, 8 + 15))
        np.testing.assert_allclose(jnp.sum(state.stoch, -1), 1.0, atol=1e-6)  # straight-through keeps the one-hot value
        assert set(np.unique(np.round(np.asarray(state.stoch), 5))) <= {0.0, 1.0}
        probs = jnp.exp(state.logits)
        np.testing.assert_allclose(jnp.sum(probs, -1), 1.0, rtol=1e-5)
        assert float(jnp.min(probs)) >= 0.01 / 5 * 0.999  # the 1% uniform mix bounds every class away from 0
    np.testing.assert_array_equal(posts.deter, priors.deter)  # posterior and prior share h_t


def test_free_bits_clamp_the_summed_kl_and_stop_its_gradient():
    key = jax.random.PRNGKey(0)
    post = jax.nn.log_softmax(jax.random.normal(key, (4, 3, 5)))
    close_prior = jax.nn.log_softmax(jax.nn.log_softmax(post) + 0.01)
    far_prior = jax.nn.log_softmax(5.0 * jax.random.normal(jax.random.PRNGKey(1), (4, 3, 5)))
    dyn, rep, kl = kl_losses(post, close_prior, 1.0)
    assert float(jnp.max(kl)) < 1.0
    np.testing.assert_array_equal(dyn, 1.0)
    np.testing.assert_array_equal(rep, 1.0)
    grad = jax.grad(lambda p: jnp.sum(kl_losses(p, close_prior, 1.0)[1]))(post)
    np.testing.assert_array_equal(grad, 0.0)
    # far apart: the clamp is inactive and applies to the KL summed over the 3 latents, not per latent
    dyn, rep, kl = kl_losses(post, far_prior, 1.0)
    expected = jnp.sum(jnp.exp(post) * (post - far_prior), axis=(-2, -1))
    np.testing.assert_allclose(kl, expected, rtol=1e-5)
    assert float(jnp.min(kl)) > 1.0
    np.testing.assert_allclose(dyn, kl, rtol=1e-6)
    np.testing.assert_allclose(rep, kl, rtol=1e-6)
    # dyn trains only the prior, rep only the posterior
    assert float(jnp.abs(jax.grad(lambda p: jnp.sum(kl_losses(post, p, 1.0)[0]))(far_prior)).sum()) > 0
    np.testing.assert_array_equal(jax.grad(lambda p: jnp.sum(kl_losses(p, far_prior, 1.0)[0]))(post), 0.0)
    np.testing.assert_array_equal(jax.grad(lambda p: jnp.sum(kl_losses(post, p, 1.0)[1]))(far_prior), 0.0)


def test_imagination_rollout_shapes_and_start_state():
    rssm, params = _rssm_and_params()
    batch, horizon = 7, 4
    start = initial_state((batch,), 8, 3, 5)
    start = start.replace(deter=jax.random.normal(jax.random.PRNGKey(0), (batch, 8)))

    def policy(state, key):
        chex.assert_shape(state.feat, (batch, 23))
        return jax.random.uniform(key, (batch, 2), minval=-1.0, maxval=1.0)

    states, actions = jax.jit(lambda s: imagine(rssm, params, policy, s, jax.random.PRNGKey(1), horizon))(start)
    chex.assert_shape(states.deter, (horizon + 1, batch, 8))
    chex.assert_shape(states.stoch, (horizon + 1, batch, 3, 5))
    chex.assert_shape(actions, (horizon, batch, 2))
    np.testing.assert_array_equal(states.deter[0], start.deter)
    assert not np.allclose(states.deter[1], states.deter[0])


def test_cube_mask_hides_whole_patches_for_whole_blocks_at_the_ratio():
    shape = (8, 64, 16, 16, 3)  # (T, B, H, W, C)
    keep = robust.cube_mask(jax.random.PRNGKey(0), shape, True, 0.5, 4, 4)
    chex.assert_shape(keep, (8, 64, 16, 16, 1))
    keep = np.asarray(keep[..., 0])
    np.testing.assert_array_equal(keep[0], keep[3])  # one mask per block of 4 frames
    assert (keep[3] != keep[4]).any()
    patches = keep.reshape(8, 64, 4, 4, 4, 4)  # every 4x4 patch is all kept or all hidden
    assert np.all(patches.min(axis=(3, 5)) == patches.max(axis=(3, 5)))
    assert 0.45 < 1.0 - keep.mean() < 0.55
    state_keep = robust.cube_mask(jax.random.PRNGKey(1), (6, 4, 5), False, 0.0, 2, 8)
    assert bool(jnp.all(state_keep))  # ratio 0 hides nothing: the ablation of masking


# ---------------------------------------------------------------- agents under the contract


@functools.lru_cache(maxsize=None)
def _chunked_run(config):
    return run_in_chunks(dreamer.make_train, config)


def test_dreamer_trains_under_vmap_over_two_seeds_with_finite_metrics():
    init_state, state, metrics = _chunked_run(TINY)
    assert metrics["return_mean"].shape == (2, 4)
    for name in ("model_loss", "reward_loss", "cont_loss", "kl", "recon_loss", "actor_loss", "critic_loss", "return_mean"):
        assert np.all(np.isfinite(np.asarray(metrics[name]))), name
    assert not np.any(np.asarray(state.diverged))
    np.testing.assert_array_equal(metrics["env_steps"][0], [8, 16, 24, 32])
    # learning started after the prefill (8 agent steps): parameters moved, differently per seed
    before, after = init_state.agent.params["wm"]["rssm"], state.agent.params["wm"]["rssm"]
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))]
    assert max(moved) > 0
    first = jax.tree.leaves(after)[0]
    assert not np.allclose(first[0], first[1])
    # the replay holds every collected transition: 32 steps per env, plus a final row per episode end
    assert np.all(np.asarray(state.agent.buffer.count) >= 16)


def test_dreamer_chunked_updates_equal_single_program_bitwise():
    static, batch = cfg_lib.make_batch(TINY, 2)
    one_program = training.batched(dreamer.make_train(dataclasses.replace(static, evals_per_chunk=4)))
    state_single, metrics_single = one_program.train(batch.keys, batch.hyper)
    _, state_chunked, metrics_chunked = _chunked_run(TINY)  # 2 chunks of 2 updates
    assert_trees_equal(state_single, state_chunked)
    assert_trees_equal(metrics_single, metrics_chunked)


def test_robust_variant_ablation_is_a_vmapped_coefficient_sweep_and_reports_the_probe():
    overrides = [{}, {"mask_ratio": 0.0, "latent_recon_coef": 0.0, "simsr_coef": 0.0}]
    config = dataclasses.replace(TINY_ROBUST, distractor="noise", probe_samples=32)
    static, batch = cfg_lib.make_batch(config, 1, overrides)
    bt = training.batched(robust.make_train(static))
    state, metrics = bt.train(batch.keys, batch.hyper)
    assert metrics["return_mean"].shape == (2, 4)
    for name in ("model_loss", "latent_recon_loss", "simsr_loss", "actor_loss", "critic_loss"):
        assert np.all(np.isfinite(np.asarray(metrics[name]))), name
    assert "recon_loss" not in metrics  # pixel reconstruction off
    assert not np.any(np.asarray(state.diverged))
    # the EMA target trails the online encoder: moved from its start, not equal to the online one
    online = jax.tree.leaves(state.agent.params["wm"]["encoder"])
    target = jax.tree.leaves(state.agent.target["encoder"])
    assert any(not np.allclose(o, t) for o, t in zip(online, target))
    # same seed, so the only difference between the members is the ablated coefficients
    assert float(metrics["latent_recon_loss"][0, -1]) != float(metrics["latent_recon_loss"][1, -1])
    # the probe of RSSM features (Agent.encode_sequence) is reported at every evaluation
    for name in ("probe_endo_r2", "probe_exo_r2", "probe_endo_r2_random", "probe_exo_r2_random"):
        values = np.asarray(metrics[name])
        assert values.shape == (2, 4) and np.all(np.isfinite(values)) and np.all(values <= 1.0), name
    np.testing.assert_allclose(metrics["probe_endo_r2_oracle"], 1.0, atol=1e-3)  # endo regressed on itself
    assert float(jnp.min(metrics["probe_exo_r2_oracle"])) < 0.9  # exo is not a function of endo
    # the random-agent reference is a constant column (same key every evaluation)
    np.testing.assert_array_equal(metrics["probe_endo_r2_random"][:, 0], metrics["probe_endo_r2_random"][:, -1])
    # the learned features differ between the members (their params differ), the references do not
    assert float(metrics["probe_endo_r2"][0, -1]) != float(metrics["probe_endo_r2"][1, -1])


def test_dreamer_probe_features_filter_sequences_and_restart_at_episode_starts():
    config = dataclasses.replace(TINY, probe_samples=16)
    trainer = dreamer.make_train(config)
    agent = trainer.agent
    state = agent.init(jax.random.PRNGKey(0), config)
    steps, envs = 6, 3
    obs_size = trainer.env.observation_space(trainer.env_params).shape[0]
    rollout = {
        "obs": jax.random.normal(jax.random.PRNGKey(1), (steps, envs, obs_size)),
        "action": jax.random.uniform(jax.random.PRNGKey(2), (steps, envs, 1), minval=-1.0, maxval=1.0),
        "first": jnp.zeros((steps, envs), bool).at[3, 0].set(True),  # env 0 starts a new episode at t = 3
    }
    encode = jax.jit(agent.encode_sequence)
    feats = encode(state, rollout)
    chex.assert_shape(feats, (steps, envs, TINY.deter_size + TINY.stoch_size * TINY.classes))
    probs = np.asarray(feats[..., TINY.deter_size:]).reshape(steps, envs, TINY.stoch_size, TINY.classes)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)  # class probabilities, not samples
    assert np.all(probs > 0)
    # a restart forgets the history: env 0 at t = 3 equals the first step of the rollout cut at t = 3,
    # env 1 (no restart) does not, and every env's t = 0 starts from the zero state
    tail = encode(state, jax.tree.map(lambda x: x[3:], rollout))
    np.testing.assert_allclose(feats[3, 0], tail[0, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[3, 1], tail[0, 1], atol=1e-4)
    # same inputs, same features: the probe's samples come from a fixed key
    np.testing.assert_array_equal(np.asarray(encode(state, rollout)), np.asarray(feats))


def test_agents_are_registered_and_bad_configs_fail_before_compiling():
    assert agents.get("dreamer").config_cls is dreamer.DreamerConfig
    assert agents.get("dreamer-robust").config_cls is robust.RobustDreamerConfig
    assert "cartpole-cpu" in agents.get("dreamer").presets and "cartpole-noise-cpu" in agents.get("dreamer-robust").presets
    with pytest.raises(ValueError, match="actor_grad"):
        dataclasses.replace(TINY, actor_grad="magic").validate()
    with pytest.raises(ValueError, match="seq_len"):
        dataclasses.replace(TINY, seq_len=100).validate()
    with pytest.raises(ValueError, match="image_size"):
        dataclasses.replace(TINY, obs="pixels", image_size=60).validate()
    with pytest.raises(ValueError, match="mask_ratio"):
        cfg_lib.make_batch(TINY_ROBUST, 1, [{"mask_ratio": 1.5}])
    with pytest.raises(ValueError, match="not sweepable"):
        cfg_lib.make_batch(TINY_ROBUST, 1, [{"masking": False}])
    with pytest.raises(ValueError, match="RobustDreamerConfig"):
        robust.make_train(TINY)


# ---------------------------------------------------------------- learning (slow)


@pytest.mark.slow
def test_cpu_preset_learns_cartpole_balance_from_state_above_random():
    # Budget: the cartpole-cpu-small preset, 600 updates = 38.4k agent steps (154k physics steps
    # at action_repeat 4), 2 vmapped seeds. Measured on the shared 2-core CPU: 206 s for the test
    # (compile included) under light load, last-two-eval means 520 and 601 (random 300); expect
    # ~10 minutes when the machine is busy (~0.46 s per member-update). At 400 updates it failed
    # (382 and 582), hence 600. The larger cartpole-cpu preset is the GPU-checked one (~590 and
    # ~670 on an H100; ~1.7 s per update per seed on this CPU).
    config = dreamer.PRESETS["cartpole-cpu-small"]
    try:
        random_return = references.random_return(config.env, config.action_repeat)
    except ValueError:  # the reference table not filled: measure it under the same protocol
        random_return = references.measure_random_return(config.env, config.action_repeat)
    static, batch = cfg_lib.make_batch(config, 2)
    bt = training.batched(dreamer.make_train(static))
    start = time.time()
    _, metrics = bt.train(batch.keys, batch.hyper)
    # 4 evaluation episodes per point are noisy: judge the mean of the last two points (updates 550 and 600)
    late = np.asarray(metrics["return_mean"][:, -2:]).mean(axis=1)
    print(f"dreamer cartpole-cpu-small: last-2-eval mean returns {late}, random {random_return:.1f}, wall {time.time() - start:.0f}s")
    assert np.all(late > 1.5 * random_return)

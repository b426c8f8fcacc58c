"""The endo/exo probe at evaluation points (`TrainConfig.probe_samples`, `representation.probe_metrics`).

Proves: the probe columns appear in every evaluation point's metrics (so `runs.run` writes them to
metrics.csv) and are finite R^2 values <= 1; the oracle row is ~1 for endo by construction; SAC
without an encoder on state observations probes the observation itself, which holds the endo
vector linearly, so its endo R^2 is ~1; the random-encoder reference is a constant column; the
probe is refused for an env whose info lacks endo/exo and for a bad sample count.
"""

import dataclasses

import jax
import numpy as np
import pytest

from jaxrl_suite import config as cfg_lib
from jaxrl_suite import ppo, representation, sac, training

PROBE_COLUMNS = (
    "probe_endo_r2", "probe_exo_r2", "probe_endo_r2_random", "probe_exo_r2_random", "probe_endo_r2_oracle", "probe_exo_r2_oracle",
)

SAC_IDENTITY = sac.SACConfig(
    env="cartpole-balance", distractor="twin", difficulty="easy", action_repeat=8, num_envs=2, collect_steps=1, gradient_steps=1,
    batch_size=8, buffer_size=64, warmup_steps=0, hidden_sizes=(8,), num_updates=4, eval_every=2, evals_per_chunk=2,
    eval_episodes=1, probe_samples=64,
)


def test_probe_columns_are_in_every_evaluation_point_and_are_r2_values():
    static, batch = cfg_lib.make_batch(SAC_IDENTITY, 2)
    bt = training.batched(sac.make_train(static))
    state = bt.init(batch.keys, batch.hyper)
    _, metrics = bt.update(state)
    for name in PROBE_COLUMNS:
        values = np.asarray(metrics[name])
        assert values.shape == (2, 2), name
        assert np.all(np.isfinite(values)) and np.all(values <= 1.0 + 1e-6), (name, values)
    # the oracle embeds endo itself; SAC with no encoder embeds the observation, which holds endo linearly
    np.testing.assert_allclose(np.asarray(metrics["probe_endo_r2_oracle"]), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(metrics["probe_endo_r2"]), 1.0, atol=1e-2)
    # the twin's own state is in the observation too: exo is linearly decodable from it, not from endo
    assert np.all(np.asarray(metrics["probe_exo_r2"]) > np.asarray(metrics["probe_exo_r2_oracle"]))
    # references use keys fixed per member, so they are constant over evaluation points
    for name in ("probe_endo_r2_random", "probe_exo_r2_random", "probe_endo_r2_oracle"):
        values = np.asarray(metrics[name])
        np.testing.assert_array_equal(values[:, 0], values[:, 1])


def test_probe_of_a_learned_ppo_encoder_differs_from_its_random_reference():
    config = ppo.PPOConfig(
        env="cartpole-balance", distractor="twin", difficulty="easy", action_repeat=8, num_envs=2, num_steps=4, update_epochs=1,
        num_minibatches=2, hidden_sizes=(8,), latent_dim=4, encoder_hidden=(8,), objective="simsr", num_updates=2, eval_every=2,
        eval_episodes=1, probe_samples=32,
    )
    trainer = ppo.make_train(config)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(1))
    metrics = jax.jit(trainer.evaluate)(state)
    for name in PROBE_COLUMNS:
        assert np.isfinite(float(metrics[name])) and float(metrics[name]) <= 1.0 + 1e-6, name
    # at init the member's encoder and the reference are different random draws of one architecture
    assert float(metrics["probe_endo_r2"]) != float(metrics["probe_endo_r2_random"])


def test_probe_states_come_with_matching_endo_and_exo():
    trainer = sac.make_train(SAC_IDENTITY)
    obs, endo, exo = representation.probe_states(trainer.env, trainer.env_params, jax.random.PRNGKey(0), 20)
    assert obs.shape[0] == endo.shape[0] == exo.shape[0] == 20
    # cartpole's endo vector is its observation's first five features (DMC's observation)
    np.testing.assert_allclose(np.asarray(obs[:, :5]), np.asarray(endo), atol=1e-6)


def test_probe_refusals_name_the_problem():
    with pytest.raises(ValueError, match="probe_samples=8 must be 0"):
        sac.make_train(dataclasses.replace(SAC_IDENTITY, probe_samples=8))
    with pytest.raises(ValueError, match=r"needs info\['endo'\]"):
        ppo.make_train(ppo.PPOConfig(env="gymnax:CartPole-v1", num_envs=2, num_steps=4, num_minibatches=2, probe_samples=16))

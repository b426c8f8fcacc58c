"""The env core's contract: endo/exo separation, determinism, vmap, auto-reset, gymnax compatibility, bad input."""

import chex
import gymnax.wrappers
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_suite.envs import DistractedEnv, list_envs, make


def rollout(env, params, key, actions):
    """Scan env.step over a fixed action sequence; returns per-step outputs."""
    obs, state = env.reset(key, params)

    def body(carry, inp):
        state = carry
        step_key, action = inp
        obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return state, (obs, reward, terminated, truncated, info["endo"], info["exo"], info["final_observation"])

    keys = jax.random.split(jax.random.fold_in(key, 1), actions.shape[0])
    _, out = jax.lax.scan(body, state, (keys, actions))
    return obs, out


def random_actions(key, n, dim=1):
    return jax.random.uniform(key, (n, dim), minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def noisy_env():
    env, params = make("cartpole-swingup", obs="state", distractor="noise", difficulty="hard")
    return env, params.replace(max_steps_in_episode=50)  # several episode ends in a short rollout


def test_exo_trajectory_ignores_actions_across_episode_ends(noisy_env):
    env, params = noisy_env
    key = jax.random.key(3)
    run = jax.jit(lambda a: rollout(env, params, key, a))
    _, out_a = run(random_actions(jax.random.key(10), 130))
    _, out_b = run(-random_actions(jax.random.key(11), 130))
    exo_a, exo_b = out_a[5], out_b[5]
    assert int(out_a[3].sum()) == 2  # two truncations inside the rollout
    np.testing.assert_array_equal(np.asarray(exo_a), np.asarray(exo_b))
    assert not np.array_equal(np.asarray(out_a[4]), np.asarray(out_b[4]))  # the actions did matter to endo
    assert np.std(np.asarray(exo_a)) > 0.1  # and the distractor really moves


def test_endo_trajectory_identical_with_distractor_on_and_off():
    key, actions = jax.random.key(5), random_actions(jax.random.key(6), 120)
    clean, p_clean = make("cartpole-swingup", obs="state")
    noisy, p_noisy = make("cartpole-swingup", obs="state", distractor="noise", difficulty="hard")
    p_clean, p_noisy = p_clean.replace(max_steps_in_episode=50), p_noisy.replace(max_steps_in_episode=50)
    _, out_clean = jax.jit(lambda a: rollout(clean, p_clean, key, a))(actions)
    _, out_noisy = jax.jit(lambda a: rollout(noisy, p_noisy, key, a))(actions)
    np.testing.assert_array_equal(np.asarray(out_clean[4]), np.asarray(out_noisy[4]))
    np.testing.assert_array_equal(np.asarray(out_clean[1]), np.asarray(out_noisy[1]))
    # the task's features are the first 5 observation entries in both
    np.testing.assert_array_equal(np.asarray(out_clean[0]), np.asarray(out_noisy[0][..., :5]))


def test_same_key_is_bitwise_reproducible_and_vmap_matches_single(noisy_env):
    env, params = noisy_env
    actions = random_actions(jax.random.key(1), 60)
    run = jax.jit(lambda k: rollout(env, params, k, actions))
    a = run(jax.random.key(7))
    b = run(jax.random.key(7))
    chex.assert_trees_all_equal(a, b)
    keys = jax.random.split(jax.random.key(8), 4)
    batched = jax.jit(jax.vmap(lambda k: rollout(env, params, k, actions)))(keys)
    for i in range(4):
        single = run(keys[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single, rtol=1e-5, atol=1e-5)


def test_jit_and_no_jit_agree(noisy_env):
    env, params = noisy_env
    key = jax.random.key(2)
    obs, state = env.reset(key, params)
    action = jnp.array([0.3])
    jitted = env.step(jax.random.key(9), state, action, params)
    with jax.disable_jit():
        eager = env.step(jax.random.key(9), state, action, params)
    chex.assert_trees_all_close(jitted, eager, rtol=1e-5, atol=1e-6)


def test_vmap_over_difficulty_params_in_one_program():
    env, _ = make("cartpole-swingup", obs="state", distractor="noise")
    presets = [make("cartpole-swingup", obs="state", distractor="noise", difficulty=d)[1] for d in ("none", "easy", "medium", "hard")]
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), *presets)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(None, 0)))(jax.random.key(0), batch)
    chex.assert_shape(obs, (4, 21))
    scale = np.abs(np.asarray(obs[:, 5:])).mean(axis=1)
    assert scale[0] == 0.0 and scale[1] < scale[2] < scale[3]  # "none" switches the features off


def test_fixed_mode_holds_the_distractor_still():
    env, params = make("cartpole-swingup", obs="state", distractor="noise", fixed=True)
    _, out = jax.jit(lambda a: rollout(env, params, jax.random.key(0), a))(random_actions(jax.random.key(1), 30))
    exo = np.asarray(out[5])
    assert np.all(exo == exo[0]) and np.abs(exo).sum() > 0


def test_auto_reset_reports_truncation_and_keeps_final_observation(noisy_env):
    env, params = noisy_env
    _, (obs, reward, terminated, truncated, endo, exo, final_obs) = jax.jit(
        lambda a: rollout(env, params, jax.random.key(4), a)
    )(random_actions(jax.random.key(2), 60))
    truncated, terminated = np.asarray(truncated), np.asarray(terminated)
    assert not terminated.any()  # DMC tasks never terminate
    np.testing.assert_array_equal(np.nonzero(truncated)[0], [49])
    obs, final_obs = np.asarray(obs), np.asarray(final_obs)
    # at the time limit the observation is the reset one, and info keeps the one before it
    assert not np.allclose(obs[49, :5], final_obs[49, :5])
    np.testing.assert_allclose(np.abs(obs[49, 2]), 0.0, atol=0.1)  # swingup resets hanging down: sin(theta) ~ 0
    assert obs[49, 1] < -0.99
    # away from episode ends the final observation is the observation
    np.testing.assert_array_equal(final_obs[:49], obs[:49])
    # the distractor part is shared by both: it runs through the reset
    np.testing.assert_array_equal(final_obs[49, 5:], obs[49, 5:])


@pytest.mark.parametrize("obs_mode,distractor", [("state", "noise"), ("pixels", "shapes")])
def test_auto_reset_in_a_batch_where_only_some_members_end(obs_mode, distractor):
    # the new episode's state and frame are made for a vmapped batch only when a member's episode ends
    # (cond_any); the members that go on must keep theirs, the ones that end must reset, as single steps do
    env, params = make("cartpole-swingup", obs=obs_mode, distractor=distractor, difficulty="hard", image_size=16)
    params = params.replace(max_steps_in_episode=5)
    n = 4
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), n), params)
    keys, actions = jax.random.split(jax.random.key(1), n), random_actions(jax.random.key(2), n)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    single = jax.jit(env.step)
    as_int = lambda tree: jax.tree.map(lambda x: x.astype(jnp.int32) if x.dtype == jnp.uint8 else x, tree)
    for times, ends in (([4, 0, 4, 2], [True, False, True, False]), ([0, 1, 2, 3], [False] * 4)):
        batch_states = states.replace(time=jnp.asarray(times, jnp.int32))
        obs, next_states, reward, terminated, truncated, info = step(keys, batch_states, actions, params)
        np.testing.assert_array_equal(np.asarray(truncated), ends)
        for i in range(n):
            member = jax.tree.map(lambda x: x[i], batch_states)
            expected = single(keys[i], member, actions[i], params)
            got = jax.tree.map(lambda x: x[i], (obs, next_states, reward, terminated, truncated, info))
            chex.assert_trees_all_close(as_int(got), as_int(expected), rtol=1e-5, atol=1e-5)
            if ends[i]:
                assert int(next_states.time[i]) == 0
                assert not np.array_equal(np.asarray(obs[i]), np.asarray(info["final_observation"][i]))
            else:
                np.testing.assert_array_equal(np.asarray(obs[i]), np.asarray(info["final_observation"][i]))
                np.testing.assert_array_equal(np.asarray(info["endo"][i]), np.asarray(info["final_endo"][i]))


def test_action_repeat_sums_rewards_and_shortens_the_episode():
    env1, p1 = make("cartpole-balance")
    env4, p4 = make("cartpole-balance", action_repeat=4)
    assert p4.max_steps_in_episode == 250 and p1.max_steps_in_episode == 1000
    obs, s = env1.reset(jax.random.key(0), p1)
    _, s4 = env4.reset(jax.random.key(0), p4)
    _, s4n, r4, *_ = env4.step(jax.random.key(1), s4, jnp.array([0.2]), p4)
    assert 3.0 < float(r4) <= 4.0  # near-upright balance earns almost 1 per control step
    assert float(s4n.endo.qpos[0]) != float(s4.endo.qpos[0])


def test_pixels_track_the_cart_position():
    env, params = make("cartpole-balance", obs="pixels", image_size=64)
    _, state = env.reset(jax.random.key(0), params)
    columns = []
    for x in (-1.5, 0.0, 1.5):
        moved = state.replace(endo=state.endo.replace(qpos=jnp.array([x, 0.0])))
        frame = np.asarray(env.render_frame(moved, params)).astype(np.float32)
        background = np.asarray(env.task.background_color) * 255
        mask = np.abs(frame - background).sum(-1) > 60
        mask[35:, :] = False  # keep the pole and cart top, above the fixed track (row ~37)
        columns.append(np.nonzero(mask)[1].mean())
    chex.assert_shape(frame, (64, 64, 3))
    assert columns[0] < columns[1] < columns[2]
    # cart centre in pixels follows x: 64 px span 2 * 2.3 world units
    np.testing.assert_allclose(columns[2] - columns[0], 3.0 * 64 / 4.6, atol=3.0)


def test_pixel_observation_dtype_and_space():
    env, params = make("cartpole-swingup", obs="pixels", image_size=16)
    obs, state = env.reset(jax.random.key(0), params)
    chex.assert_shape(obs, (16, 16, 3))
    chex.assert_type(obs, jnp.uint8)
    space = env.observation_space(params)
    assert space.shape == (16, 16, 3) and space.dtype == jnp.uint8
    assert bool(space.contains(obs))


def test_env_objects_hash_by_value_so_remaking_does_not_recompile():
    a, _ = make("cartpole-swingup", obs="state", distractor="noise", difficulty="hard")
    b, _ = make("cartpole-swingup", obs="state", distractor="noise", difficulty="easy")
    assert a == b and hash(a) == hash(b)  # difficulty lives in params, not in the env object
    c, _ = make("cartpole-swingup", obs="state", distractor="noise", num_noise_features=8)
    assert a != c
    with pytest.raises(Exception):
        a.obs = "pixels"  # frozen


def test_versioned_names():
    assert "cartpole-swingup-v1" in list_envs()
    env, _ = make("cartpole-swingup-v1")
    assert env.name == "cartpole-swingup-v1"
    with pytest.raises(ValueError, match="v1"):
        make("cartpole-swingup-v7")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="cartpole-swingpu"), "unknown env 'cartpole-swingpu'.*cartpole-swingup-v1"),
        (dict(name="cartpole-swingup", obs="rgb"), "obs='rgb'.*state.*pixels"),
        (dict(name="cartpole-swingup", distractor="fog"), "unknown distractor 'fog'.*noise"),
        (dict(name="cartpole-swingup", difficulty="extreme"), "difficulty='extreme'.*hard"),
        (dict(name="cartpole-swingup", obs="pixels", image_size=0), "image_size=0"),
        (dict(name="cartpole-swingup", obs="pixels", image_size=-16), "image_size=-16"),
        (dict(name="cartpole-swingup", obs="pixels", distractor="noise"), "noise.*state"),
        (dict(name="cartpole-swingup", distractor="noise", num_noise_features=-3), "num_noise_features=-3"),
        (dict(name="cartpole-swingup", action_repeat=0), "action_repeat=0"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_gymnax_wrappers_run_our_env():
    env, params = make("cartpole-balance")
    legacy = gymnax.wrappers.LegacyStepAPIWrapper(env)
    obs, state = legacy.reset(jax.random.key(0), params)
    obs, state, reward, done, info = legacy.step(jax.random.key(1), state, jnp.array([0.1]), params)
    assert obs.shape == (5,) and done.dtype == jnp.bool_
    gym_env = gymnax.wrappers.GymnaxToGymWrapper(env, params, seed=0)
    obs, _ = gym_env.reset(seed=0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = gym_env.step(np.array([0.5], np.float32))
    assert gym_env.observation_space.shape == (5,) and 0.0 <= float(reward) <= 1.0
    log = gymnax.wrappers.LogWrapper(env)
    _, log_state = log.reset(jax.random.key(0), params)
    *_, info = log.step(jax.random.key(1), log_state, jnp.array([0.0]), params)
    assert "returned_episode_returns" in info


def test_state_is_a_pytree_with_endo_and_exo(noisy_env):
    env, params = noisy_env
    _, state = env.reset(jax.random.key(0), params)
    assert set(vars(state)) >= {"endo", "exo", "time"}
    _, _, _, _, _, info = env.step(jax.random.key(1), state, jnp.zeros(1), params)
    chex.assert_shape(info["endo"], (5,))
    chex.assert_shape(info["exo"], (4,))
    assert isinstance(env, DistractedEnv)

"""The distractors' contract: exo is a Markov chain of the key alone, endo never feels it, pixels show it,
"none" hides it, difficulty vmaps, `fixed` freezes it, train/test ranges are disjoint; plus each
distractor's own invariants (DCS colour walk, camera identity, elastic discs, twins that restart alone)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_suite.envs import make
from jaxrl_suite.envs.distractors.camera import CameraDistractor
from jaxrl_suite.envs.distractors.color import ColorDistractor
from jaxrl_suite.envs.distractors.combined import CombinedDistractor
from jaxrl_suite.envs.distractors.shapes import ShapesDistractor, ShapesState
from jaxrl_suite.envs.registry import DISTRACTORS
from jaxrl_suite.envs.render import View, coverage, pixel_grid, pixel_size, sd_circle

TASK = "cartpole-swingup"
EPISODE = 50  # short episodes, so a rollout crosses many episode ends

# (id, registry name, obs mode, static options): every registered distractor, both twin modes, both disc motions
CASES = {
    "shapes": ("shapes", "pixels", ()),
    "background": ("background", "pixels", ()),
    "color": ("color", "pixels", ()),
    "camera": ("camera", "pixels", ()),
    "twin": ("twin", "pixels", (("num_twins", 2),)),
    "twin-state": ("twin", "state", (("num_twins", 2),)),
    "dcs": ("dcs", "pixels", ()),
    "combined": ("combined", "pixels", (("parts", ("shapes", "twin")),)),
}
PIXEL_CASES = [c for c, (_, obs, _) in CASES.items() if obs == "pixels"]


def build(case, difficulty="hard", image_size=16, fixed=False, obs=None):
    """(env, params) for a case, with short episodes."""
    name, case_obs, options = CASES[case]
    env, params = make(
        TASK, obs=obs or case_obs, distractor=name, difficulty=difficulty, image_size=image_size, fixed=fixed, **dict(options)
    )
    return env, params.replace(max_steps_in_episode=EPISODE)


def random_actions(seed, n):
    return jax.random.uniform(jax.random.key(seed), (n, 1), minval=-1.0, maxval=1.0)


def rollout(env, params, key, actions):
    """Reset with `key`, then step through `actions`; returns the initial exo, step keys and per-step outputs."""
    _, state = env.reset(key, params)
    keys = jax.random.split(jax.random.fold_in(key, 1), actions.shape[0])

    def body(state, inp):
        step_key, action = inp
        _, state, reward, _, truncated, info = env.step(step_key, state, action, params)
        return state, (info["endo"], info["exo"], reward, truncated)

    _, out = jax.lax.scan(body, state, (keys, actions))
    return state.exo, keys, out


@functools.lru_cache(maxsize=None)
def rollout_program(env):
    """One compiled rollout per env, shared by the tests (params are an argument, so `fixed` reuses it)."""
    return jax.jit(lambda params, key, actions: rollout(env, params, key, actions))


@functools.lru_cache(maxsize=None)
def long_rollouts(case):
    """Two 1200-step rollouts of a hard distracted env under different actions, same key (computed once)."""
    env, params = build(case)
    run = rollout_program(env)
    key = jax.random.key(3)
    return env, params, run(params, key, random_actions(10, 1200)), run(params, key, -random_actions(11, 1200))


@functools.lru_cache(maxsize=None)
def render_program(env):
    """One compiled `render_frame` per env, shared by the tests."""
    return jax.jit(env.render_frame)


@functools.lru_cache(maxsize=None)
def clean_env(obs, image_size):
    """The undistracted env and its params, with short episodes."""
    env, params = make(TASK, obs=obs, image_size=image_size)
    return env, params.replace(max_steps_in_episode=EPISODE)


def test_every_registered_distractor_is_covered():
    covered = {name for name, _, _ in CASES.values()}
    assert set(DISTRACTORS) - {"none", "noise"} == covered  # noise is covered by test_core


@pytest.mark.parametrize("case", list(CASES))
def test_exo_trajectory_ignores_actions_and_is_the_standalone_chain(case):
    env, params, (exo0, keys, out_a), (_, _, out_b) = long_rollouts(case)
    endo_a, exo_a, _, truncated = (np.asarray(x) for x in out_a)
    assert truncated.sum() == 1200 // EPISODE  # 24 episode ends inside the rollout
    np.testing.assert_array_equal(exo_a, np.asarray(out_b[1]))
    assert not np.array_equal(endo_a, np.asarray(out_b[0]))  # the actions did matter to the system
    assert exo_a.std(axis=0).max() > 0.05  # the distractor really moves

    # the exo is the distractor's own chain under the env's distractor key, so resets never touch it
    # (a separate program, so XLA may fuse the arithmetic differently: equal to float rounding, checked
    # over the first 300 steps, 6 episode ends, before rounding differences can grow in chaotic n-body)
    dist, dparams = env.distractor, params.distractor

    def chain(exo, step_key):
        exo = dist.step(env.step_randomness(step_key)[0], exo, dparams)
        return exo, dist.exo_vector(exo)

    _, standalone = jax.jit(lambda e, k: jax.lax.scan(chain, e, k))(exo0, keys[:300])
    np.testing.assert_allclose(exo_a[:300], np.asarray(standalone), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", list(CASES))
def test_endo_trajectory_identical_with_distractor_on_and_off(case):
    env, params, (_, _, out), _ = long_rollouts(case)
    clean, clean_params = clean_env(env.obs, env.image_size)
    _, _, clean_out = rollout_program(clean)(clean_params, jax.random.key(3), random_actions(10, 1200))
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(clean_out[0]))  # endo
    np.testing.assert_array_equal(np.asarray(out[2]), np.asarray(clean_out[2]))  # reward


@pytest.mark.parametrize("case", PIXEL_CASES)
def test_pixels_change_with_exo_and_none_difficulty_is_invisible(case):
    env, params = build(case, image_size=64)
    clean, clean_params = clean_env("pixels", 64)
    render = render_program(env)
    obs, state = env.reset(jax.random.key(0), params)
    chex.assert_shape(obs, (64, 64, 3))  # (16 px frames are checked by the vmap test)
    assert obs.dtype == jnp.uint8 and env.observation_space(params).shape == (64, 64, 3)
    # a different exo under the same endo: 40 distractor steps later (twins start alike, hanging down)
    advance = lambda exo: jax.lax.fori_loop(0, 40, lambda i, e: env.distractor.step(jax.random.key(i), e, params.distractor), exo)
    same_endo = state.replace(exo=jax.jit(advance)(state.exo))
    frame_a, frame_b = np.asarray(render(state, params)), np.asarray(render(same_endo, params))
    assert np.abs(frame_a.astype(int) - frame_b.astype(int)).sum() > 255  # the exo state shows in the frame

    _, none_params = build(case, difficulty="none", image_size=64)
    undistracted = np.asarray(render_program(clean)(state.replace(exo=jnp.zeros((0,))), clean_params))
    for exo_state in (state, same_endo):
        np.testing.assert_array_equal(np.asarray(render(exo_state, none_params)), undistracted)


@pytest.mark.parametrize("case", list(CASES))
def test_vmap_over_difficulty_presets_in_one_program(case):
    env, _ = build(case)
    batch = jax.tree.map(lambda *xs: jnp.stack(xs), *[build(case, d)[1] for d in ("none", "easy", "medium", "hard")])
    _, state = jax.jit(jax.vmap(env.reset, in_axes=(None, 0)))(jax.random.key(0), batch)
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, None, 0)))
    for _ in range(3):
        obs, state, _, _, _, info = step(jax.random.key(1), state, jnp.array([0.5]), batch)
    clean, clean_params = clean_env(env.obs, env.image_size)
    _, clean_state = clean.reset(jax.random.key(0), clean_params)
    for _ in range(3):
        clean_obs, clean_state, *_ = clean.step(jax.random.key(1), clean_state, jnp.array([0.5]), clean_params)
    obs, clean_obs = np.asarray(obs), np.asarray(clean_obs)
    np.testing.assert_array_equal(np.asarray(info["final_observation"]), obs)  # no episode ended
    if env.obs == "pixels":
        chex.assert_shape(obs, (4, 16, 16, 3))
        assert obs.dtype == np.uint8
        np.testing.assert_array_equal(obs[0], clean_obs)  # "none" leaves the frame undistracted
    else:
        n_task = clean_obs.shape[0]
        np.testing.assert_array_equal(obs[:, :n_task], np.broadcast_to(clean_obs, (4, n_task)))
        assert np.all(obs[0, n_task:] == 0.0) and np.abs(obs[1:, n_task:]).sum(axis=1).min() > 0.1
    for hard in range(1, 4):
        assert not np.array_equal(obs[hard], obs[0])


@pytest.mark.parametrize("case", list(CASES))
def test_fixed_mode_holds_the_exo_still(case):
    env, params = build(case, fixed=True)
    _, _, (_, exo, _, _) = rollout_program(env)(params, jax.random.key(0), random_actions(1, 1200))
    exo = np.asarray(exo)
    assert np.all(exo == exo[0]) and np.abs(exo).sum() > 0


@pytest.mark.parametrize("case", list(CASES))
def test_train_test_ranges_are_disjoint_and_sampled_inside(case):
    env, _ = build(case)
    dist = env.distractor
    parts = dist.parts if isinstance(dist, CombinedDistractor) else (dist,)
    for part in parts:
        train, test = part.ranges["train"], part.ranges["test"]
        assert set(train) == set(test) and train  # every distractor has a generalisation split
        for field, (lo, hi) in train.items():
            t_lo, t_hi = test[field]
            assert lo < hi and t_lo < t_hi and (hi < t_lo or t_hi < lo), field
    keys = jax.random.split(jax.random.key(0), 16)
    for split in ("train", "test"):
        drawn = [dist.sample_params(k, split) for k in keys]
        for params in drawn:
            for part, part_params in zip(parts, params if isinstance(dist, CombinedDistractor) else (params,)):
                for field, (lo, hi) in part.ranges[split].items():
                    assert lo <= float(getattr(part_params, field)) <= hi, (split, field)
        # sampled params run in the same env (same static config)
        obs, _ = jax.eval_shape(env.reset, jax.random.key(1), env.default_params.replace(distractor=drawn[0]))
        assert obs.shape == env.observation_space().shape
    with pytest.raises(ValueError, match="valid"):
        dist.sample_params(keys[0], "validation")


# ---- each distractor's own invariants --------------------------------------------------------


def test_color_offsets_follow_the_dcs_walk_and_stay_within_scale():
    dist = ColorDistractor(num_materials=3)
    params = dist.preset("hard")
    exo0 = dist.init(jax.random.key(0), params)

    def body(exo, key):
        exo = dist.step(key, exo, params)
        return exo, exo

    _, walk = jax.lax.scan(body, exo0, jax.random.split(jax.random.key(1), 400))
    walk = np.asarray(jnp.concatenate([exo0[None], walk]))
    assert np.abs(walk).max() <= 1.0
    increments = np.diff(walk, axis=0)
    interior = (np.abs(walk[1:]) < 1.0) & (np.abs(walk[:-1]) < 1.0)
    np.testing.assert_allclose(increments[interior].std(), 0.03, rtol=0.1)  # DCS: std 0.03 * scale in scale units
    palette, background = jnp.full((3, 3), 0.5), jnp.full((3,), 0.5)
    new_palette, new_background = dist.recolor(exo0, params, palette, background)
    shift = np.abs(np.asarray(jnp.concatenate([new_palette, new_background[None]])) - 0.5)
    assert shift.max() <= 0.3 + 1e-6 and shift.max() > 0.1  # uniform within +-scale (0.3 at hard)


def test_camera_scale_zero_is_exact_identity_and_shift_is_bounded():
    dist = CameraDistractor(view_cx=0.0, view_cy=0.25, view_half=2.3)
    grid = jax.random.normal(jax.random.key(0), (8, 8, 2))
    exo = dist.init(jax.random.key(1), dist.default_params())
    np.testing.assert_array_equal(np.asarray(dist.camera(exo, dist.preset("none"), grid)), np.asarray(grid))
    corner = exo.replace(pose=jnp.array([1.0, -1.0, 0.0, 0.0]))
    moved = dist.camera(corner, dist.preset("hard"), grid)
    np.testing.assert_allclose(np.asarray(moved - grid), np.broadcast_to([0.3 * 2.3, -0.3 * 2.3], grid.shape), atol=1e-5)
    zoomed = dist.camera(exo.replace(pose=jnp.array([0.0, 0.0, 1.0, 0.0])), dist.preset("hard"), grid)
    centre = jnp.array([0.0, 0.25])
    np.testing.assert_allclose(np.asarray(zoomed - centre), np.asarray(2.0**0.3 * (grid - centre)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("motion", ["ou", "nbody"])
def test_shapes_stay_in_the_view(motion):
    dist = ShapesDistractor(num_shapes=8, motion=motion)
    params = dist.preset("hard")

    def body(exo, key):
        exo = dist.step(key, exo, params)
        return exo, exo.pos

    _, pos = jax.jit(lambda k: jax.lax.scan(body, dist.init(k, params), jax.random.split(k, 500)))(jax.random.key(0))
    pos = np.asarray(pos)
    assert np.abs(pos).max() <= 1.0 and pos.std(axis=0).min() > 0.05


def test_nbody_without_gravity_bounces_elastically():
    dist = ShapesDistractor(num_shapes=4, motion="nbody")
    params = dist.default_params().replace(gravity=0.0, speed=0.05)
    exo = dist.init(jax.random.key(0), params)
    speed0 = np.linalg.norm(np.asarray(exo.vel), axis=-1)
    flips = 0
    for key in jax.random.split(jax.random.key(1), 200):
        new = dist.step(key, exo, params)
        flips += int(np.sum(np.sign(np.asarray(new.vel)) != np.sign(np.asarray(exo.vel))))
        exo = new
    np.testing.assert_allclose(np.linalg.norm(np.asarray(exo.vel), axis=-1), speed0, rtol=1e-6)  # walls keep |v|
    assert flips > 0  # and the walls were hit


def test_shapes_num_active_turns_discs_off():
    env, params = build("shapes", image_size=64)
    _, state = env.reset(jax.random.key(0), params)
    # park every disc at the view centre's left, far from the cart
    pos = jnp.tile(jnp.array([[-0.7, 0.6]]), (8, 1))
    state = state.replace(exo=ShapesState(pos=pos, vel=state.exo.vel, color=state.exo.color))
    clean, clean_params = clean_env("pixels", 64)
    undistracted = np.asarray(render_program(clean)(state.replace(exo=jnp.zeros((0,))), clean_params)).astype(int)
    covered = []
    for active in (0.0, 0.5, 1.0):
        dparams = params.distractor.replace(num_active=active, similarity=0.0)
        frame = np.asarray(render_program(env)(state, params.replace(distractor=dparams))).astype(int)
        covered.append(np.abs(frame - undistracted).sum())
    assert covered[0] == 0 and covered[2] > 0
    assert 0.4 < covered[1] / covered[2] < 0.6  # a fractional count fades the disc in: half visible at 0.5


def test_shapes_layer_shows_the_nearest_visible_disc_with_the_largest_coverage():
    dist = ShapesDistractor(num_shapes=3)
    grid, px = pixel_grid(64, View(0.0, 0.0, 1.0)), pixel_size(64, View(0.0, 0.0, 1.0))
    # discs 0 and 1 overlap (centres 0.2 apart, radius 0.2); disc 2 sits on disc 0 but is invisible
    pos = jnp.array([[-0.1, 0.0], [0.1, 0.0], [-0.1, 0.0]])
    color = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    exo = ShapesState(pos=pos, vel=jnp.zeros_like(pos), color=color)
    params = dist.default_params().replace(size=0.2, num_active=2.0, similarity=0.0, opacity=1.0)
    (layer,) = dist.front(exo, params, grid, px, jnp.zeros((3, 3)))
    # coverage: the largest of the two visible discs' coverages, pixel by pixel
    per_disc = [coverage(sd_circle(grid, pos[k], 0.2), px) for k in range(2)]
    np.testing.assert_allclose(np.asarray(layer.alpha), np.maximum(*map(np.asarray, per_disc)), atol=1e-6)
    # colour: the disc whose centre is nearer; the overlap splits at x = 0, the invisible disc cuts nothing
    xs = np.asarray(grid[..., 0])
    inside = np.asarray(layer.alpha) > 0.99
    assert inside.sum() > 100
    rgb = np.asarray(layer.rgb)
    assert np.all(rgb[inside & (xs < 0)] == [1.0, 0.0, 0.0]) and np.all(rgb[inside & (xs > 0)] == [0.0, 0.0, 1.0])
    # nothing visible at all: zero coverage everywhere, and finite (sqrt of the infinite distance)
    (hidden,) = dist.front(exo, params.replace(opacity=0.0), grid, px, jnp.zeros((3, 3)))
    assert np.all(np.asarray(hidden.alpha) == 0.0) and np.all(np.isfinite(np.asarray(hidden.rgb)))


def test_twin_in_the_agents_state_hides_behind_it_at_hard_and_shows_at_easy():
    env, params = build("twin", image_size=64)
    _, state = env.reset(jax.random.key(0), params)
    # put both copies exactly where the agent is: at hard (overlap, same colours) they disappear behind it
    copies = jax.tree.map(lambda x: jnp.stack([x, x]), state.endo)
    state = state.replace(exo=state.exo.replace(endo=copies))
    clean, clean_params = clean_env("pixels", 64)
    undistracted = np.asarray(render_program(clean)(state.replace(exo=jnp.zeros((0,))), clean_params)).astype(int)
    render = render_program(env)
    hard = np.abs(np.asarray(render(state, params)).astype(int) - undistracted).max(axis=-1)
    easy_params = params.replace(distractor=build("twin", "easy")[1].distractor)
    easy = np.abs(np.asarray(render(state, easy_params)).astype(int) - undistracted).max(axis=-1)
    # at hard only anti-aliased edge pixels change (partial coverage composited twice); at easy whole copies show
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    edge = np.any([np.abs(undistracted - np.roll(undistracted, s, (0, 1))).max(-1) > 0 for s in shifts], axis=0)
    assert np.all(hard[~edge] == 0) and hard.max() > 0
    assert (easy[~edge] > 30).sum() > 10


def test_twin_state_features_are_the_copies_task_features():
    env, params = build("twin-state")
    obs, state = env.reset(jax.random.key(0), params)
    chex.assert_shape(obs, (15,))  # 5 cartpole features + 2 copies x 5
    copies = jax.vmap(lambda e: env.task.features(e, params.task))(state.exo.endo)
    np.testing.assert_allclose(np.asarray(obs[5:]), np.asarray(copies).ravel())
    assert env.observation_space(params).shape == (15,)


def test_twin_restarts_only_when_its_own_copy_terminates():
    # in the gridworld a copy that reaches the goal terminates; it must restart at once, never rest there
    env, params = make("exo-gridworld", obs="state", distractor="twin", difficulty="hard")
    twin = env.distractor
    goal = np.asarray(env.task.cell_center(jnp.asarray(env.task.goal)) / ((env.task.size - 1) / 2.0))

    def body(exo, key):
        exo = twin.step(key, exo, params.distractor)
        return exo, jax.vmap(env.task.endo_vector)(exo.endo)

    keys = jax.random.split(jax.random.key(0), 64)
    exo0 = jax.vmap(lambda k: twin.init(k, params.distractor))(keys)
    _, positions = jax.jit(jax.vmap(lambda e, k: jax.lax.scan(body, e, jax.random.split(k, 300))))(exo0, keys)
    positions = np.asarray(positions)  # (64, 300, 1, 2)
    assert not np.any(np.all(np.isclose(positions, goal), axis=-1))
    jumps = np.abs(np.diff(positions, axis=1)).sum(axis=-1) * (env.task.size - 1) / 2.0
    assert jumps.max() > 1.5  # some copy reached the goal and restarted elsewhere (a jump of more than one cell)


def test_bad_distractor_options_raise_clear_errors():
    with pytest.raises(ValueError, match="num_shapes"):
        make(TASK, obs="pixels", distractor="shapes", num_shapes=0)
    with pytest.raises(ValueError, match="motion"):
        make(TASK, obs="pixels", distractor="shapes", motion="brownian")
    with pytest.raises(ValueError, match="num_twins"):
        make(TASK, obs="state", distractor="twin", num_twins=-1)
    with pytest.raises(ValueError, match="parts"):
        make(TASK, obs="pixels", distractor="combined")
    with pytest.raises(ValueError, match="valid"):
        make(TASK, obs="pixels", distractor="combined", parts=("shapes", "smoke"))
    with pytest.raises(ValueError, match="works with obs"):
        make(TASK, obs="state", distractor="combined", parts=("twin", "color"))
    with pytest.raises(ValueError, match="pixels"):
        make(TASK, obs="state", distractor="dcs")
    with pytest.raises(ValueError, match="valid"):
        make(TASK, obs="pixels", distractor="dcs")[0].distractor.preset("extreme")

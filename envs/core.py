"""The distracted environment: an endogenous task composed with an exogenous distractor.

A `Task` is the controllable system (physics, reward, features, drawing). A `Distractor` is a
Markov process of its own that never reads the action (state features and/or pixel layers).
`DistractedEnv` composes the two behind gymnax's API (>= 1.0):

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

Design points that the tests pin down:
- The state keeps `endo` (task) and `exo` (distractor) apart; `info` exposes both as flat float
  vectors, so any embedding can be probed for what it kept.
- Every step draws its randomness the same way, distractor on or off (one threefry call for the
  distractor's key, the task's key and the auto-reset's key), and the distractor advances with its own
  key before anything else: the endogenous trajectory does not depend on the distractor
  and the exogenous trajectory does not depend on the actions.
- Auto-reset replaces only `endo` (gymnax's base `step` would swap the whole state and so restart
  the distractor at every episode end); the distractor runs straight through episode boundaries.
  The reset (its random draw and, for pixels, the new episode's first frame) is computed only on
  steps where an episode ends (`cond_any`), so a step normally draws one frame, which is also
  `info["final_observation"]`.
- Shape-changing settings (image size, counts) are static fields of these frozen dataclasses;
  continuous knobs live in `EnvParams`, a pytree, so difficulty can be a vmapped axis.
"""

from __future__ import annotations

import abc
import dataclasses
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from jax.custom_batching import custom_vmap

from jaxrl_suite.envs import render
from jaxrl_suite.envs.render import Layer, View

OBS_MODES = ("state", "pixels")


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Pick between two pytrees of the same structure with one scalar predicate."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def flat_vector(tree: Any) -> jax.Array:
    """All leaves of a pytree, raveled into one float32 vector."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,), jnp.float32)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])


def cond_any(pred: jax.Array, true_fn: Any, false_fn: Any, operands: Any) -> Any:
    """`lax.cond(pred, true_fn, false_fn, operands)` whose vmapped form still branches, on whether any `pred` holds.

    Under `jax.vmap` a plain `lax.cond` with a batched predicate becomes a select that runs both
    branches for every member. Here the batched form runs `false_fn` alone when no member's
    `pred` holds, and otherwise both, selected per member: the same values, but an expensive
    branch that is rarely taken (an auto-reset: the new episode's initial state and first frame,
    needed only on steps where an episode ends) is skipped on most steps. Nested vmaps (seeds x
    envs) branch once on the predicate of the whole batch. Not differentiable (`custom_vmap`);
    env steps never are.
    """

    @custom_vmap
    def branch(pred, operands):
        return jax.lax.cond(pred, true_fn, false_fn, operands)

    @branch.def_vmap
    def branch_batched(axis_size, in_batched, pred, operands):
        pred_batched, operands_batched = in_batched
        if not pred_batched:
            pred = jnp.broadcast_to(pred, (axis_size,))
        # unbatched operands (params shared by every member, say) stay unbatched
        in_axes = jax.tree.map(lambda b: 0 if b else None, operands_batched)

        def both(args):
            member_pred, ops = args
            taken = jax.vmap(true_fn, in_axes=(in_axes,), axis_size=axis_size)(ops)
            other = jax.vmap(false_fn, in_axes=(in_axes,), axis_size=axis_size)(ops)
            return jax.tree.map(lambda a, b: jnp.where(member_pred.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), taken, other)

        def neither(args):
            return jax.vmap(false_fn, in_axes=(in_axes,), axis_size=axis_size)(args[1])

        out = cond_any(jnp.any(pred), both, neither, (pred, operands))
        return out, jax.tree.map(lambda _: True, out)

    return branch(pred, operands)


def split_with_bits(key: jax.Array, num_keys: int, num_words: int = 0) -> tuple[jax.Array, jax.Array]:
    """`num_keys` independent keys and `num_words` random uint32 words, from one draw of `key`.

    On CPU each threefry call compiles to a small XLA while loop whose fixed cost dominates what
    it draws (about 20 us per call for 1024 vmapped envs on the 2-core CPU, plus ~5 us per word), so a step
    that splits its key and then draws with every piece pays that cost several times. Here the new
    keys' data and the extra words all come from one `jax.random.bits` call: a key is only its
    implementation's key-data words, and a split also makes them from the same random bits.
    """
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # a legacy raw uint32 key
    width = jax.random.key_data(key).shape[-1]
    bits = jax.random.bits(key, (num_keys * width + num_words,), jnp.uint32)
    keys = jax.random.wrap_key_data(bits[: num_keys * width].reshape(num_keys, width), impl=jax.random.key_impl(key))
    return keys, bits[num_keys * width :]


def uniform_from_bits(bits: jax.Array, minval: Any = 0.0, maxval: Any = 1.0) -> jax.Array:
    """Uniform floats in [minval, maxval) from random uint32 words, one each (as `jax.random.uniform` makes them)."""
    # 23 random mantissa bits under the exponent of 1.0 give a float in [1, 2)
    unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0
    minval, maxval = jnp.asarray(minval, jnp.float32), jnp.asarray(maxval, jnp.float32)
    return jnp.maximum(minval, unit * (maxval - minval) + minval)


def normal_from_bits(bits: jax.Array) -> jax.Array:
    """Standard normal floats from random uint32 words, one each (as `jax.random.normal` makes them)."""
    low = jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0))  # keeps erfinv finite
    return jnp.sqrt(2.0).astype(jnp.float32) * jax.scipy.special.erfinv(uniform_from_bits(bits, low, 1.0))


@struct.dataclass
class EnvState:
    """Environment state: the controllable system, the distractor process, and episode time."""

    endo: Any
    exo: Any
    time: jax.Array


@struct.dataclass
class EnvParams:
    """Continuous (vmappable) settings: the task's, the distractor's, and the episode limit."""

    task: Any
    distractor: Any
    max_steps_in_episode: int = 1000
    exo_frozen: bool = False  # the `fixed` mode: the distractor is drawn once and held still


@dataclasses.dataclass(frozen=True)
class Task(abc.ABC):
    """A controllable system: dynamics, reward, state features and how to draw it.

    Subclasses are frozen dataclasses (static, hashable config) and implement the abstract
    methods below as pure functions of `endo` pytrees and a params pytree.
    """

    name: ClassVar[str] = "task"
    version: ClassVar[int] = 1
    # False: `step` never draws from its key (deterministic dynamics), so a step need not make one
    stochastic_step: ClassVar[bool] = True
    episode_steps: ClassVar[int] = 1000
    view: ClassVar[View] = View(0.0, 0.0, 1.0)
    # colours of the task's materials, (M, 3) in [0, 1]; the colour distractor perturbs these
    palette: ClassVar[tuple[tuple[float, float, float], ...]] = ((0.9, 0.5, 0.2),)
    background_color: ClassVar[tuple[float, float, float]] = (0.15, 0.2, 0.3)

    def default_params(self) -> Any:
        """The task's continuous parameters (a pytree)."""
        return {}

    @abc.abstractmethod
    def reset(self, key: jax.Array, params: Any) -> Any:
        """Draw an initial endogenous state."""

    @abc.abstractmethod
    def step(self, key: jax.Array, endo: Any, action: jax.Array, params: Any) -> Any:
        """Advance the endogenous state by one control step."""

    @abc.abstractmethod
    def reward(self, endo: Any, action: jax.Array, params: Any) -> jax.Array:
        """Reward in [0, 1] for arriving in `endo` under `action`."""

    def terminated(self, endo: Any, params: Any) -> jax.Array:
        """Whether `endo` ends the episode (DMC tasks never terminate)."""
        return jnp.asarray(False)

    @abc.abstractmethod
    def features(self, endo: Any, params: Any) -> jax.Array:
        """The state observation: a float32 feature vector."""

    def endo_vector(self, endo: Any) -> jax.Array:
        """The endogenous state as a flat float vector (what the probe regresses onto)."""
        return flat_vector(endo)

    @abc.abstractmethod
    def action_space(self, params: Any) -> spaces.Space:
        """The gymnax action space."""

    def random_action(self, key: jax.Array, params: Any) -> jax.Array:
        """A uniformly random action."""
        return self.action_space(params).sample(key)

    @abc.abstractmethod
    def draw(self, endo: Any, grid: jax.Array, px: float, palette: jax.Array) -> list[Layer]:
        """Layers (bottom first) drawing the system on a world-coordinate grid (H, W, 2)."""


@dataclasses.dataclass(frozen=True)
class Distractor:
    """An exogenous Markov process and how it shows in observations; never reads the action.

    State distractors add `num_features` features; pixel distractors override the render hooks.
    The default hooks leave the observation untouched, so a distractor implements only the
    ones it uses.
    """

    name: ClassVar[str] = "none"
    obs_modes: ClassVar[tuple[str, ...]] = OBS_MODES
    # difficulty -> overrides of default_params(); every preset shares the static config, so a
    # batch of presets (difficulty as a vmapped axis) is one compiled program
    presets: ClassVar[dict[str, dict[str, Any]]] = {"none": {}, "easy": {}, "medium": {}, "hard": {}}
    # generalisation splits: field -> (low, high), disjoint between "train" and "test"
    ranges: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {"train": {}, "test": {}}

    @classmethod
    def build(cls, task: Task, obs: str, image_size: int, action_repeat: int = 1, **kwargs: Any) -> "Distractor":
        """Construct for a task, observation mode and the env's action repeat (static config from kwargs)."""
        return cls(**kwargs)

    def default_params(self) -> Any:
        """The distractor's continuous parameters (a pytree)."""
        return {}

    def preset(self, difficulty: str) -> Any:
        """Params of a named difficulty preset."""
        if difficulty not in self.presets:
            raise ValueError(f"difficulty={difficulty!r} is not a preset of {self.name!r}; valid: {sorted(self.presets)}")
        return self.default_params().replace(**self.presets[difficulty]) if self.presets[difficulty] else self.default_params()

    def sample_params(self, key: jax.Array, split: str, base: Any = None) -> Any:
        """Params with each ranged field drawn uniformly from the split's range (train or test)."""
        if split not in self.ranges:
            raise ValueError(f"split={split!r}; valid: {sorted(self.ranges)}")
        params = self.preset("medium") if base is None else base
        fields = self.ranges[split]
        keys = jax.random.split(key, max(1, len(fields)))
        draws = {f: jax.random.uniform(k, minval=lo, maxval=hi) for k, (f, (lo, hi)) in zip(keys, sorted(fields.items()))}
        return params.replace(**draws) if draws else params

    def init(self, key: jax.Array, params: Any) -> Any:
        """Draw the initial exogenous state."""
        return jnp.zeros((0,), jnp.float32)

    def step(self, key: jax.Array, exo: Any, params: Any) -> Any:
        """Advance the exogenous state by one step."""
        return exo

    def exo_vector(self, exo: Any) -> jax.Array:
        """The exogenous latent as a flat float vector (what the probe regresses onto)."""
        return flat_vector(exo)

    @property
    def num_features(self) -> int:
        """How many features this distractor appends to state observations."""
        return 0

    def features(self, exo: Any, params: Any) -> jax.Array:
        """Features appended to the state observation."""
        return jnp.zeros((0,), jnp.float32)

    def camera(self, exo: Any, params: Any, grid: jax.Array) -> jax.Array:
        """Map the pixel grid to world coordinates seen by the camera."""
        return grid

    def recolor(self, exo: Any, params: Any, palette: jax.Array, background: jax.Array):
        """Perturb the task's material colours and the background colour."""
        return palette, background

    def background(self, exo: Any, params: Any, grid: jax.Array, px: float, base: jax.Array) -> jax.Array:
        """Paint the opaque background image (H, W, 3)."""
        return base

    def behind(self, exo: Any, params: Any, grid: jax.Array, px: float, palette: jax.Array) -> list[Layer]:
        """Layers drawn behind the system."""
        return []

    def front(self, exo: Any, params: Any, grid: jax.Array, px: float, palette: jax.Array) -> list[Layer]:
        """Layers drawn in front of the system."""
        return []


@dataclasses.dataclass(frozen=True)
class NoDistractor(Distractor):
    """No distractor: an empty exogenous state."""

    name: ClassVar[str] = "none"


@dataclasses.dataclass(frozen=True)
class DistractedEnv(environment.Environment):
    """A task seen through a distractor, as state features or uint8 pixels (gymnax API)."""

    task: Task
    distractor: Distractor = NoDistractor()
    obs: str = "state"
    image_size: int = 64
    action_repeat: int = 1
    # registry names, recorded in runs; do not affect dynamics
    env_id: str = ""
    distractor_id: str = "none"

    def __post_init__(self):
        if self.obs not in OBS_MODES:
            raise ValueError(f"obs={self.obs!r} is not an observation mode; valid: {list(OBS_MODES)}")
        if self.obs not in self.distractor.obs_modes:
            raise ValueError(
                f"distractor {self.distractor.name!r} works with obs in {list(self.distractor.obs_modes)}, "
                f"not obs={self.obs!r}"
            )
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size={self.image_size!r} must be an integer >= 8")
        if not isinstance(self.action_repeat, int) or self.action_repeat < 1:
            raise ValueError(f"action_repeat={self.action_repeat!r} must be an integer >= 1")

    # ---- gymnax API -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Registry name with version, e.g. 'cartpole-swingup-v1'."""
        return self.env_id or f"{self.task.name}-v{self.task.version}"

    @property
    def default_params(self) -> EnvParams:
        """Default continuous settings, with the episode limit in agent steps."""
        return EnvParams(
            task=self.task.default_params(),
            distractor=self.distractor.default_params(),
            max_steps_in_episode=max(1, self.task.episode_steps // self.action_repeat),
        )

    @property
    def num_actions(self) -> int:
        """Number of discrete actions, or the action dimension for continuous control."""
        space = self.task.action_space(self.task.default_params())
        return space.n if isinstance(space, spaces.Discrete) else int(space.shape[0])

    def action_space(self, params: EnvParams | None = None) -> spaces.Space:
        """The task's action space."""
        params = self.default_params if params is None else params
        return self.task.action_space(params.task)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        """Box of state features, or of uint8 pixels (H, W, 3)."""
        if self.obs == "pixels":
            return spaces.Box(0, 255, (self.image_size, self.image_size, 3), jnp.uint8)
        return spaces.Box(-jnp.inf, jnp.inf, (self.num_state_features,), jnp.float32)

    @property
    def num_state_features(self) -> int:
        """Length of the state observation: task features plus distractor features."""
        params = self.task.default_params()
        endo = jax.eval_shape(lambda k: self.task.reset(k, params), jax.random.key(0))
        task_feats = jax.eval_shape(lambda e: self.task.features(e, params), endo)
        return int(task_feats.shape[0]) + self.distractor.num_features

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: EnvParams | None = None) -> tuple[jax.Array, EnvState]:
        """Start an episode and the distractor process."""
        params = self.default_params if params is None else params
        key_endo, key_exo = jax.random.split(key)
        endo = self.task.reset(key_endo, params.task)
        exo = self.distractor.init(key_exo, params.distractor)
        state = EnvState(endo=endo, exo=exo, time=jnp.zeros((), jnp.int32))
        return self.observe(state, params), state

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams | None = None):
        """One agent step with auto-reset of the task only; the distractor runs on."""
        params = self.default_params if params is None else params
        key_exo, key_endo, key_reset = self.step_randomness(key)

        moved = self.distractor.step(key_exo, state.exo, params.distractor)
        exo = tree_select(params.exo_frozen, state.exo, moved)

        endo, reward, terminated = self._repeat_action(key_endo, state.endo, action, params.task)
        time = state.time + 1
        truncated = jnp.logical_and(time >= params.max_steps_in_episode, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)

        final_obs = self.observe(EnvState(endo=endo, exo=exo, time=time), params)

        def restart(ops):
            key_reset, exo, params, _, _ = ops
            fresh = self.task.reset(key_reset, params.task)
            return fresh, self.observe(EnvState(endo=fresh, exo=exo, time=jnp.zeros((), jnp.int32)), params)

        # the new episode's initial state (its random draw included) and first observation (a second
        # frame, for pixels) are made only on steps where an episode ends: for a vmapped batch, only
        # when one of its members' does
        endo_next, obs = cond_any(done, restart, lambda ops: (ops[3], ops[4]), (key_reset, exo, params, endo, final_obs))
        info = {
            "endo": self.task.endo_vector(endo_next),
            "exo": self.distractor.exo_vector(exo),
            "final_observation": final_obs,
            "final_endo": self.task.endo_vector(endo),
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        next_state = EnvState(endo=endo_next, exo=exo, time=jnp.where(done, 0, time))
        return obs, next_state, reward, terminated, truncated, info

    def step_randomness(self, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """A step's keys for the distractor, the task and an auto-reset, from one threefry call.

        The split is the same with the distractor on or off (see split_with_bits). The reset key is
        drawn from only when an episode ends. A task whose step is deterministic
        (`stochastic_step` False) gets the step's own key, which it never draws from, and the draw
        is two words shorter.
        """
        stochastic = self.task.stochastic_step
        keys, _ = split_with_bits(key, 2 + int(stochastic))
        return keys[0], (keys[1] if stochastic else key), keys[-1]

    # ---- internals ----------------------------------------------------------------------------

    def _repeat_action(self, key, endo, action, task_params):
        """Apply one action for `action_repeat` control steps, summing rewards, stopping at termination."""

        def body(carry, step_key):
            endo, total, ended = carry
            moved = self.task.step(step_key, endo, action, task_params)
            endo = tree_select(ended, endo, moved)
            total = total + jnp.where(ended, 0.0, self.task.reward(moved, action, task_params))
            ended = jnp.logical_or(ended, self.task.terminated(moved, task_params))
            return (endo, total, ended), None

        if self.action_repeat == 1:  # the common case: no scan, so XLA fuses the step with the rest
            (endo, total, ended), _ = body((endo, jnp.zeros((), jnp.float32), jnp.asarray(False)), key)
            return endo, total, ended
        keys = jax.random.split(key, self.action_repeat)
        init = (endo, jnp.zeros((), jnp.float32), jnp.asarray(False))
        (endo, total, ended), _ = jax.lax.scan(body, init, keys)
        return endo, total, ended

    def state_features(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """The state-mode observation of a state whatever `obs` is (lets state-trained policies act in pixel envs)."""
        params = self.default_params if params is None else params
        return self._state_obs(state.endo, state.exo, params)

    def observe(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Observation of a state: features, or a rendered uint8 frame."""
        if self.obs == "state":
            return self._state_obs(state.endo, state.exo, params)
        return self.render_frame(state, params)

    def _state_obs(self, endo, exo, params):
        task_f = self.task.features(endo, params.task).astype(jnp.float32)
        exo_f = self.distractor.features(exo, params.distractor).astype(jnp.float32)
        return jnp.concatenate([task_f, exo_f])

    def _render_scene(self, exo, params):
        """Everything in a frame that does not depend on endo: camera, colours, background, layers."""
        d, dp = self.distractor, params.distractor
        view = self.task.view
        grid = d.camera(exo, dp, render.pixel_grid(self.image_size, view))
        px = render.pixel_size(self.image_size, view)
        palette = jnp.asarray(self.task.palette, jnp.float32)
        bg_color = jnp.asarray(self.task.background_color, jnp.float32)
        palette, bg_color = d.recolor(exo, dp, palette, bg_color)
        base = jnp.broadcast_to(bg_color, (self.image_size, self.image_size, 3))
        base = render.paint(d.background(exo, dp, grid, px, base), d.behind(exo, dp, grid, px, palette))
        front = d.front(exo, dp, grid, px, palette)
        return grid, px, palette, base, (render.merge(front) if front else None)

    def _render_system(self, scene, endo):
        grid, px, palette, base, front = scene
        image = render.paint(base, self.task.draw(endo, grid, px, palette))
        if front is not None:
            image = render.over(image, front)
        return render.to_uint8(image)

    def render_frame(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """A uint8 frame of the state at `image_size`, whatever the observation mode."""
        params = self.default_params if params is None else params
        endo, exo = render.materialize((state.endo, state.exo))
        return self._render_system(self._render_scene(exo, params), endo)

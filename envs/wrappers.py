"""Wrappers that bring other environments into the suite and change how any env is stepped.

- `BraxToGymnax`: a brax env (brax's `reset(rng)` / `step(state, action)` API) behind gymnax's
  6-tuple step, with our own auto-reset and truncation at `episode_length`.
- `StateDistractorWrapper`: adds any state distractor (e.g. `NoiseDistractor`) to any gymnax env,
  or to any brax env through `BraxToGymnax`. The distractor keeps the suite's exogenous contract:
  its own key, never the action, straight through the inner env's auto-reset.
- `FrameStack`: the last k observations, concatenated on the channel (pixels) or feature axis.
- `ActionRepeat`: one agent action held for k inner steps, rewards summed, stopping at an episode end.

Every wrapper is a frozen dataclass (hashable by value, so wrapping the same env twice does not
recompile) that subclasses gymnax's `Environment` and keeps its API, so wrappers compose with
each other and with gymnax's own wrappers. brax is imported lazily, so importing the suite stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl_suite.envs.core import Distractor, flat_vector, tree_select


def _is_brax_env(env: Any) -> bool:
    """Duck-typed check for a brax env, so brax need not be imported to tell."""
    return not isinstance(env, environment.Environment) and all(
        hasattr(env, attr) for attr in ("reset", "step", "observation_size", "action_size", "unwrapped")
    )


def _require_gymnax(env: Any, wrapper: str) -> None:
    if not isinstance(env, environment.Environment):
        raise ValueError(
            f"{wrapper} wraps a gymnax Environment, got {type(env).__name__}; "
            "wrap a brax env in BraxToGymnax first (StateDistractorWrapper does this itself)"
        )


def _default(env: environment.Environment, params: Any) -> Any:
    return env.default_params if params is None else params


# ---- brax -------------------------------------------------------------------------------------


@struct.dataclass
class BraxParams:
    """The episode limit in agent steps (brax envs keep their physics constants in the env object)."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class BraxEnvState:
    """brax's `State` (physics, obs, reward, done, metrics, info) and the step count of the episode."""

    brax_state: Any
    time: jax.Array


@dataclasses.dataclass(frozen=True)
class BraxToGymnax(environment.Environment):
    """A brax env behind gymnax's API: 6-tuple step, auto-reset, truncation at `episode_length`.

    `env` is a brax registry name ("inverted_pendulum", "ant", ...) or a brax env object; a raw
    env is expected (not one already wrapped by brax's `EpisodeWrapper`/`AutoResetWrapper`, which
    would reset it twice). A name hashes by value; an env object by identity.
    """

    env: Any
    episode_length: int = 1000
    backend: str | None = None

    def __post_init__(self):
        if not isinstance(self.episode_length, int) or self.episode_length < 1:
            raise ValueError(f"episode_length={self.episode_length!r} must be a positive integer")
        if isinstance(self.env, str):
            from brax import envs as brax_envs  # lazy: brax pulls in mujoco and friends

            known = sorted(brax_envs._envs)  # brax has no public list; the registry dict is the source
            if self.env not in known:
                raise ValueError(f"unknown brax env {self.env!r}; valid: {known}")
        elif not _is_brax_env(self.env):
            raise ValueError(f"env must be a brax env name or a brax Env object, got {type(self.env).__name__}")
        # build (and cache) the brax env here, outside any transformation: built inside a trace,
        # brax's model arrays would be cached as tracers and leak into later programs
        brax_env = self.brax_env
        obs = jax.eval_shape(lambda k: brax_env.reset(k).obs, jax.random.key(0))
        if not isinstance(obs, jax.ShapeDtypeStruct) or obs.ndim != 1:
            raise ValueError(f"BraxToGymnax needs a flat array observation, got {obs!r}")

    @property
    def brax_env(self):
        """The brax env object (built from the name on first use and cached on the instance)."""
        cached = self.__dict__.get("_brax_env")
        if cached is None:
            if isinstance(self.env, str):
                from brax import envs as brax_envs

                kwargs = {} if self.backend is None else {"backend": self.backend}
                cached = brax_envs.get_environment(self.env, **kwargs)
            else:
                cached = self.env
            object.__setattr__(self, "_brax_env", cached)
        return cached

    @property
    def name(self) -> str:
        """The brax env's name."""
        return self.env if isinstance(self.env, str) else type(self.env).__name__

    @property
    def default_params(self) -> BraxParams:
        """Episode limit from the constructor."""
        return BraxParams(max_steps_in_episode=self.episode_length)

    @property
    def num_actions(self) -> int:
        """The action dimension."""
        return int(self.brax_env.action_size)

    def action_space(self, params: BraxParams | None = None) -> spaces.Box:
        """brax's actuator commands, normalised to [-1, 1] by brax's envs."""
        return spaces.Box(-1.0, 1.0, (self.num_actions,), jnp.float32)

    def observation_space(self, params: BraxParams | None = None) -> spaces.Box:
        """Unbounded flat features."""
        obs = jax.eval_shape(lambda k: self.brax_env.reset(k).obs, jax.random.key(0))
        return spaces.Box(-jnp.inf, jnp.inf, obs.shape, jnp.float32)

    def _endo(self, brax_state) -> jax.Array:
        """Generalised positions and velocities when the pipeline has them, else the observation."""
        ps = brax_state.pipeline_state
        if ps is not None and hasattr(ps, "q") and hasattr(ps, "qd"):
            return jnp.concatenate([jnp.ravel(ps.q), jnp.ravel(ps.qd)]).astype(jnp.float32)
        return flat_vector(brax_state.obs)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: BraxParams | None = None):
        """brax reset; time starts at 0."""
        brax_state = self.brax_env.reset(key)
        return brax_state.obs, BraxEnvState(brax_state=brax_state, time=jnp.zeros((), jnp.int32))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: BraxEnvState, action: jax.Array, params: BraxParams | None = None):
        """brax step, then gymnax-style auto-reset with terminated (brax's `done`) vs truncated (time limit)."""
        params = _default(self, params)
        stepped = self.brax_env.step(state.brax_state, jnp.asarray(action, jnp.float32))
        terminated = jnp.asarray(stepped.done) > 0.5
        time = state.time + 1
        truncated = jnp.logical_and(time >= params.max_steps_in_episode, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        fresh = self.brax_env.reset(key)
        next_brax = tree_select(done, fresh, stepped)
        info = {
            "endo": self._endo(next_brax),
            "final_observation": stepped.obs,
            "final_endo": self._endo(stepped),
            "terminated": terminated,
            "truncated": truncated,
            "discount": 1.0 - terminated.astype(jnp.float32),
        }
        next_state = BraxEnvState(brax_state=next_brax, time=jnp.where(done, 0, time))
        return next_brax.obs, next_state, jnp.asarray(stepped.reward, jnp.float32), terminated, truncated, info


# ---- state distractors on foreign envs --------------------------------------------------------


@struct.dataclass
class StateDistractorParams:
    """The inner env's params and the distractor's."""

    env: Any
    distractor: Any

    @property
    def max_steps_in_episode(self):
        """The inner env's episode limit (agents read this name from gymnax params)."""
        return self.env.max_steps_in_episode


@struct.dataclass
class StateDistractorState:
    """The inner env's state (`endo`) and the distractor process (`exo`), kept apart."""

    endo: Any
    exo: Any


@dataclasses.dataclass(frozen=True)
class StateDistractorWrapper(environment.Environment):
    """Any gymnax or brax env with a state distractor's features appended to its flattened observation.

    The distractor advances first each step with its own key, never sees the action, and lives
    outside the inner state, so the inner env's auto-reset cannot restart it: the exogenous
    trajectory is a function of the key alone. A brax env (object) is adapted with
    `BraxToGymnax(env, episode_length)`.
    """

    env: Any
    distractor: Distractor
    episode_length: int = 1000  # used only to adapt a brax env

    def __post_init__(self):
        if _is_brax_env(self.env):
            object.__setattr__(self, "env", BraxToGymnax(self.env, episode_length=self.episode_length))
        _require_gymnax(self.env, "StateDistractorWrapper")
        if not isinstance(self.distractor, Distractor):
            raise ValueError(f"distractor must be a jaxrl_suite Distractor, got {type(self.distractor).__name__}")
        if "state" not in self.distractor.obs_modes:
            raise ValueError(
                f"distractor {self.distractor.name!r} works with obs in {list(self.distractor.obs_modes)}; "
                "StateDistractorWrapper needs a state distractor (obs_modes containing 'state')"
            )
        space = self.env.observation_space(self.env.default_params)
        if not isinstance(space, spaces.Box):
            raise ValueError(f"the inner env's observation space must be a gymnax Box, got {type(space).__name__}")

    @property
    def name(self) -> str:
        """Inner name plus the distractor's."""
        return f"{self.env.name}+{self.distractor.name}"

    @property
    def default_params(self) -> StateDistractorParams:
        """Inner defaults and the distractor's defaults."""
        return StateDistractorParams(env=self.env.default_params, distractor=self.distractor.default_params())

    @property
    def num_actions(self) -> int:
        """The inner env's."""
        return self.env.num_actions

    def action_space(self, params: StateDistractorParams | None = None) -> spaces.Space:
        """The inner env's action space."""
        return self.env.action_space(_default(self, params).env)

    def observation_space(self, params: StateDistractorParams | None = None) -> spaces.Box:
        """A flat float32 Box: the inner bounds raveled, then unbounded distractor features."""
        inner = self.env.observation_space(_default(self, params).env)
        shape = tuple(inner.shape)
        size = math.prod(shape)
        n = self.distractor.num_features
        low = jnp.concatenate([jnp.broadcast_to(jnp.asarray(inner.low, jnp.float32), shape).ravel(), jnp.full((n,), -jnp.inf)])
        high = jnp.concatenate([jnp.broadcast_to(jnp.asarray(inner.high, jnp.float32), shape).ravel(), jnp.full((n,), jnp.inf)])
        return spaces.Box(low, high, (size + n,), jnp.float32)

    def _obs(self, inner_obs, exo, params):
        exo_f = self.distractor.features(exo, params.distractor).astype(jnp.float32)
        return jnp.concatenate([flat_vector(inner_obs), exo_f])

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: StateDistractorParams | None = None):
        """Inner reset and the distractor's initial draw, from separate keys."""
        params = _default(self, params)
        key_env, key_exo = jax.random.split(key)
        inner_obs, inner_state = self.env.reset(key_env, params.env)
        exo = self.distractor.init(key_exo, params.distractor)
        return self._obs(inner_obs, exo, params), StateDistractorState(endo=inner_state, exo=exo)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: StateDistractorState, action: Any, params: StateDistractorParams | None = None):
        """Distractor step (own key), inner step with its auto-reset; exo is never reset."""
        params = _default(self, params)
        key_exo, key_env = jax.random.split(key)
        exo = self.distractor.step(key_exo, state.exo, params.distractor)
        inner_obs, inner_state, reward, terminated, truncated, inner_info = self.env.step(key_env, state.endo, action, params.env)
        info = dict(inner_info)
        info["exo"] = self.distractor.exo_vector(exo)
        info.setdefault("endo", flat_vector(inner_state))
        info["final_observation"] = self._obs(inner_info["final_observation"], exo, params)
        obs = self._obs(inner_obs, exo, params)
        return obs, StateDistractorState(endo=inner_state, exo=exo), reward, terminated, truncated, info


# ---- frame stacking and action repeat ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _InnerParamsWrapper(environment.Environment):
    """A wrapper that keeps the inner env's params, name and spaces (subclasses change what they must)."""

    env: Any

    @property
    def name(self) -> str:
        """Inner name."""
        return self.env.name

    @property
    def default_params(self) -> Any:
        """The inner env's params (the wrapper adds none)."""
        return self.env.default_params

    @property
    def num_actions(self) -> int:
        """The inner env's."""
        return self.env.num_actions

    def action_space(self, params: Any = None) -> spaces.Space:
        """The inner env's action space."""
        return self.env.action_space(_default(self, params))

    def observation_space(self, params: Any = None) -> spaces.Space:
        """The inner env's observation space."""
        return self.env.observation_space(_default(self, params))


@struct.dataclass
class FrameStackState:
    """The inner env's state and the stacked observation (last axis holds the k frames in order)."""

    env_state: Any
    frames: jax.Array


@dataclasses.dataclass(frozen=True)
class FrameStack(_InnerParamsWrapper):
    """The last `num_frames` observations concatenated on the last axis, oldest first.

    Pixels (H, W, C) become (H, W, C * k), uint8 kept; state features (D,) become (D * k,). After
    an episode ends the stack restarts filled with k copies of the first observation, so no frame
    of the old episode leaks into the new one; `info["final_observation"]` is the stack that ends
    with the pre-reset observation.
    """

    num_frames: int = 3

    def __post_init__(self):
        _require_gymnax(self.env, "FrameStack")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames={self.num_frames!r} must be a positive integer")
        space = self.env.observation_space(self.env.default_params)
        if not isinstance(space, spaces.Box) or len(space.shape) == 0:
            raise ValueError(f"FrameStack needs an array observation space (gymnax Box with ndim >= 1), got {space!r}")

    def observation_space(self, params: Any = None) -> spaces.Box:
        """The inner Box with its last axis k times longer (array bounds tiled, scalar bounds kept)."""
        inner = self.env.observation_space(_default(self, params))
        shape = tuple(inner.shape[:-1]) + (inner.shape[-1] * self.num_frames,)

        def tile(bound):
            bound = jnp.asarray(bound)
            if bound.ndim == 0:
                return bound
            return jnp.concatenate([jnp.broadcast_to(bound, inner.shape)] * self.num_frames, axis=-1)

        return spaces.Box(tile(inner.low), tile(inner.high), shape, inner.dtype)

    def _fill(self, obs):
        return jnp.concatenate([obs] * self.num_frames, axis=-1)

    def _push(self, frames, obs):
        return jnp.concatenate([frames[..., obs.shape[-1] :], obs], axis=-1)

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None):
        """Inner reset; the stack holds k copies of the first observation."""
        obs, env_state = self.env.reset(key, _default(self, params))
        frames = self._fill(obs)
        return frames, FrameStackState(env_state=env_state, frames=frames)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: FrameStackState, action: Any, params: Any = None):
        """Inner step; push the new frame, or restart the stack when the episode ended."""
        obs, env_state, reward, terminated, truncated, info = self.env.step(key, state.env_state, action, _default(self, params))
        done = jnp.logical_or(terminated, truncated)
        frames = jnp.where(done, self._fill(obs), self._push(state.frames, obs))
        info = dict(info)
        info["final_observation"] = self._push(state.frames, info["final_observation"])
        return frames, FrameStackState(env_state=env_state, frames=frames), reward, terminated, truncated, info

    def render_frame(self, state: FrameStackState, params: Any = None) -> jax.Array:
        """The inner env's frame of the current state."""
        return self.env.render_frame(state.env_state, _default(self, params))


@dataclasses.dataclass(frozen=True)
class ActionRepeat(_InnerParamsWrapper):
    """Each agent action applied for `repeat` inner steps; rewards summed; stops at an episode end.

    When the inner env terminates or truncates at a sub-step, the remaining sub-steps are skipped:
    the returned observation is the inner env's reset observation and `info["final_observation"]`
    the pre-reset one, exactly as the inner env reported them at that sub-step. For the suite's own
    envs prefer `make(..., action_repeat=k)`, which renders once per agent step.
    """

    repeat: int = 2

    def __post_init__(self):
        _require_gymnax(self.env, "ActionRepeat")
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise ValueError(f"repeat={self.repeat!r} must be a positive integer")

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key: jax.Array, params: Any = None):
        """The inner reset."""
        return self.env.reset(key, _default(self, params))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        """`repeat` inner steps under one action; sub-steps after an episode end leave everything as it was."""
        params = _default(self, params)
        keys = jax.random.split(key, self.repeat)
        first = self.env.step(keys[0], state, action, params)

        def body(carry, sub_key):
            obs, env_state, total, terminated, truncated, info = carry
            ended = jnp.logical_or(terminated, truncated)
            obs_n, state_n, reward_n, term_n, trunc_n, info_n = self.env.step(sub_key, env_state, action, params)
            moved = (obs_n, state_n, total + reward_n, term_n, trunc_n, info_n)
            return tree_select(ended, carry, moved), None

        carry = (first[0], first[1], jnp.asarray(first[2], jnp.float32), first[3], first[4], first[5])
        (obs, env_state, total, terminated, truncated, info), _ = jax.lax.scan(body, carry, keys[1:])
        return obs, env_state, total, terminated, truncated, info

    def render_frame(self, state: Any, params: Any = None) -> jax.Array:
        """The inner env's frame of the current state."""
        return self.env.render_frame(state, _default(self, params))

"""Pixel and state distractor: look-alike copies of the task driven by random actions.

The hardest exogenous distractor of the exogenous-block-MDP papers (Efroni et al. 2022, Lamb et
al. 2022) is a copy of the agent's own system that moves on its own: it looks like the agent and
obeys the same physics, so only the response to the action tells them apart. Here `num_twins`
(static) copies of the task are advanced with the task's own `step`, their own keys and
time-correlated random actions, never the agent's:

- continuous actions: an AR(1) around the centre c of the action box,
  a' = clip(c + rho (a - c) + sqrt(1 - rho^2) (u - c)), u uniform in the box, so `rho` = 0 is
  white noise and rho near 1 gives slow, purposeful-looking pushes;
- discrete actions: sticky, the previous action is kept with probability `rho`, else redrawn.

A copy restarts (with `task.reset` and its own key) only when it terminates itself; it ignores the
agent's episode ends. The exogenous state is the copies' task states and actions.

Pixels: the copies are drawn with `task.draw` behind the agent, shifted by (offset_x, offset_y)
view half-widths (twin i by +-(1 + i // 2) times that, alternating sides; 0 = exactly overlapping,
the hardest), in colours blended from the complement of the agent's palette (similarity 0) to the
agent's own palette (similarity 1), with `opacity` 0 hiding them. State: the copies' task features
are appended, times `feature_scale` (0 switches them off).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite.envs.core import Distractor, Task, split_with_bits, tree_select, uniform_from_bits
from jaxrl_suite.envs.render import Layer


@struct.dataclass
class TwinParams:
    """Look (similarity, placement, opacity), state-feature scale, action correlation, the copies' physics."""

    task: Any  # the copies' task params (their own, so they can differ from the agent's)
    similarity: float = 0.5  # 0: complementary colours; 1: the agent's palette
    offset_x: float = 0.3  # placement, in view half-widths (0: drawn exactly over the agent's place)
    offset_y: float = 0.0
    opacity: float = 1.0  # 0 hides the copies in pixels
    feature_scale: float = 1.0  # 0 zeroes the copies' state features
    rho: float = 0.9  # time correlation of the random actions


@struct.dataclass
class TwinState:
    """The copies' task states and current actions, stacked on a leading axis of size num_twins."""

    endo: Any
    action: jax.Array


@dataclasses.dataclass(frozen=True)
class TwinDistractor(Distractor):
    """Copies of the task under random actions, drawn behind the agent and/or appended as features."""

    task: Task | None = None
    num_twins: int = 1
    repeat: int = 1  # control steps per env step; set it to the env's action_repeat so the copies keep pace
    view_half: float = 1.0

    name: ClassVar[str] = "twin"
    obs_modes: ClassVar[tuple[str, ...]] = ("state", "pixels")
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "none": {"opacity": 0.0, "feature_scale": 0.0},
        "easy": {"similarity": 0.0, "offset_x": 0.6, "rho": 0.0},
        "medium": {"similarity": 0.5, "offset_x": 0.3, "rho": 0.9},
        "hard": {"similarity": 1.0, "offset_x": 0.0, "rho": 0.95},
    }
    # similarity and offset only change pixels; rho (how long the copies' random actions persist,
    # hence how far they wander) is the knob state features see, so it is split too
    ranges: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {
        "train": {"similarity": (0.0, 0.5), "offset_x": (0.3, 0.6), "rho": (0.0, 0.6)},
        "test": {"similarity": (0.7, 1.0), "offset_x": (0.0, 0.2), "rho": (0.85, 0.98)},
    }

    def __post_init__(self):
        if not isinstance(self.task, Task):
            raise ValueError(f"task={self.task!r} must be a Task instance (build the twin with TwinDistractor.build(task, ...))")
        for field in ("num_twins", "repeat"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field}={value!r} must be a positive integer")

    @classmethod
    def build(cls, task: Task, obs: str, image_size: int, action_repeat: int = 1, **kwargs: Any) -> "TwinDistractor":
        """Copies of `task`, stepped `action_repeat` times per env step (unless `repeat` is given) to keep pace."""
        return cls(task=task, view_half=float(task.view[2]), **{"repeat": action_repeat, **kwargs})

    def default_params(self) -> TwinParams:
        """Medium difficulty, with the task's default physics."""
        return TwinParams(task=self.task.default_params())

    def _discrete(self, task_params: Any) -> bool:
        return isinstance(self.task.action_space(task_params), spaces.Discrete)

    def init(self, key: jax.Array, params: TwinParams) -> TwinState:
        """Each copy starts from `task.reset` with a random action."""
        keys = jax.random.split(key, (self.num_twins, 2))
        endo = jax.vmap(lambda k: self.task.reset(k, params.task))(keys[:, 0])
        action = jax.vmap(lambda k: self.task.random_action(k, params.task))(keys[:, 1])
        return TwinState(endo=endo, action=action)

    def _next_action(self, fresh: jax.Array, keep: jax.Array, action: jax.Array, params: TwinParams) -> jax.Array:
        """Time-correlated random action from a fresh uniform one: sticky (discrete) or AR(1) inside the box (continuous)."""
        if self._discrete(params.task):
            return jnp.where(keep < params.rho, action, fresh)
        space = self.task.action_space(params.task)
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
        center = 0.5 * (low + high)
        moved = center + params.rho * (action - center) + jnp.sqrt(1.0 - params.rho**2) * (fresh - center)
        return jnp.clip(moved, low, high).astype(action.dtype)

    def _keys_per_step(self) -> int:
        """Keys a copy uses per control step: one to restart, and one for a stochastic task step."""
        return 2 if self.task.stochastic_step else 1

    def _advance(self, keys: jax.Array, endo: Any, action: jax.Array, params: TwinParams) -> Any:
        """`repeat` task steps of one copy with its keys, restarting only on its own termination."""

        def body(endo, keys):
            # a deterministic task step never draws, so it shares the restart key (keys[-1])
            moved = self.task.step(keys[0], endo, action, params.task)
            ended = self.task.terminated(moved, params.task)
            return tree_select(ended, self.task.reset(keys[-1], params.task), moved), None

        keys = keys.reshape(self.repeat, self._keys_per_step())
        if self.repeat == 1:  # no scan, so XLA fuses the copy's step with the agent's
            return body(endo, keys[0])[0]
        return jax.lax.scan(body, endo, keys)[0]

    def step(self, key: jax.Array, exo: TwinState, params: TwinParams) -> TwinState:
        """Advance every copy with its own randomness; the agent's action is never seen."""
        space = self.task.action_space(params.task)
        per_copy = self._keys_per_step() * self.repeat
        if isinstance(space, spaces.Box):
            # one random draw for every copy's keys and fresh uniform action (the law of Box.sample):
            # on CPU each threefry call has a fixed cost of ~20 us per 1024 envs (core.split_with_bits)
            size = int(np.prod(space.shape))
            keys, bits = split_with_bits(key, self.num_twins * per_copy, self.num_twins * size)
            low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
            fresh = uniform_from_bits(bits.reshape((self.num_twins,) + tuple(space.shape)), low, high)
            keep = jnp.zeros((self.num_twins,), jnp.float32)  # unused by continuous actions
            keys = keys.reshape(self.num_twins, per_copy)
        else:
            k_fresh, k_keep, k_steps = jax.random.split(key, 3)
            fresh = jax.vmap(lambda k: self.task.random_action(k, params.task))(jax.random.split(k_fresh, self.num_twins))
            keep = jax.random.uniform(k_keep, (self.num_twins,))
            keys = jax.random.split(k_steps, (self.num_twins, per_copy))
        action = jax.vmap(lambda f, k, a: self._next_action(f, k, a, params))(fresh, keep, exo.action)
        endo = jax.vmap(lambda k, e, a: self._advance(k, e, a, params))(keys, exo.endo, action)
        return TwinState(endo=endo, action=action)

    def exo_vector(self, exo: TwinState) -> jax.Array:
        """The copies' endo vectors, then their actions."""
        endo = jax.vmap(self.task.endo_vector)(exo.endo)
        return jnp.concatenate([jnp.ravel(endo), jnp.ravel(exo.action)]).astype(jnp.float32)

    @property
    def num_features(self) -> int:
        """The task's feature count per copy."""
        params = self.task.default_params()
        endo = jax.eval_shape(lambda k: self.task.reset(k, params), jax.random.key(0))
        return self.num_twins * int(jax.eval_shape(lambda e: self.task.features(e, params), endo).shape[0])

    def features(self, exo: TwinState, params: TwinParams) -> jax.Array:
        """The copies' task features, scaled by `feature_scale`."""
        feats = jax.vmap(lambda e: self.task.features(e, params.task))(exo.endo)
        return params.feature_scale * jnp.ravel(feats).astype(jnp.float32)

    def twin_palette(self, params: TwinParams, palette: jax.Array) -> jax.Array:
        """The copies' colours: the complement of the agent's palette blended towards it by `similarity`."""
        distinct = 1.0 - palette
        return distinct + params.similarity * (palette - distinct)

    def behind(self, exo: TwinState, params: TwinParams, grid: jax.Array, px: float, palette: jax.Array) -> list[Layer]:
        """Each copy drawn by the task, shifted to its place and faded by `opacity`."""
        colors = self.twin_palette(params, palette)
        offset = self.view_half * jnp.stack([params.offset_x, params.offset_y])
        layers = []
        for i in range(self.num_twins):
            side = (1 + i // 2) * (1.0 if i % 2 == 0 else -1.0)
            endo = jax.tree.map(lambda x: x[i], exo.endo)
            for layer in self.task.draw(endo, grid - side * offset, px, colors):
                layers.append(Layer(layer.rgb, layer.alpha * params.opacity))
        return layers

"""DMC-style point mass (easy): push a damped planar point mass to the centre of a walled arena.

Constants follow dm_control's `suite/point_mass.xml` and `suite/point_mass.py`:
- a 0.3 kg sphere of radius 0.01 m on two slide joints (x and y) with damping 1 N s/m each;
- the arena's walls stand at +-0.3 m; the slide joints are limited to [-0.29, 0.29] so the ball
  stops touching a wall. MuJoCo enforces the limit with a soft constraint; here it is a hard stop
  that absorbs the velocity pushing into the wall (our approximation);
- two motors act through fixed tendons, one per axis in the easy task (the hard task randomises
  the tendon directions), with gear 0.1 and control in [-1, 1]^2: the force is 0.1 N per axis,
  the terminal speed gear / damping = 0.1 m/s and the time constant mass / damping = 0.3 s, so the
  target is reached from a typical start (0.2 m away) in about 2 s and from a corner in about
  4 s, well within the 20 s episode;
- timestep 0.02 s, 1000 steps (20 s); MuJoCo's Euler integrator is replaced by RK4;
- reset: position uniform within the joint limits, at rest; the target is at the origin;
- reward: `near_target * small_control`, with near_target = tolerance(dist, (0, 0.015), margin=0.015)
  (the target geom's size 0.015) and small_control = (4 + mean_i tolerance(u_i, margin=1,
  value_at_margin=0, sigmoid='quadratic')) / 5, so it is 1 at the target with zero control;
- observation: position (2) and velocity (2), DMC's `position` and `velocity`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite.envs import render
from jaxrl_suite.envs.core import Task
from jaxrl_suite.envs.render import View
from jaxrl_suite.envs.tasks.physics import rk4, tolerance

ARENA_HALF = 0.3  # wall positions
POSITION_LIMIT = 0.29  # slide joints' range: the ball (radius 0.01) touches a wall
BALL_SIZE = 0.01
TARGET_SIZE = 0.015


@struct.dataclass
class PointMassState:
    """Position and velocity of the point mass in the plane."""

    pos: jax.Array
    vel: jax.Array


@struct.dataclass
class PointMassParams:
    """Physical constants (vmappable, e.g. for domain randomisation)."""

    mass: float = 0.3
    gear: float = 0.1
    damping: float = 1.0


@dataclasses.dataclass(frozen=True)
class PointMass(Task):
    """Point mass (easy): drive a damped point mass to the target at the centre of the arena."""

    name: ClassVar[str] = "point-mass-easy"
    version: ClassVar[int] = 1
    stochastic_step: ClassVar[bool] = False  # RK4 of the equations of motion draws nothing
    episode_steps: ClassVar[int] = 1000
    dt: ClassVar[float] = 0.02
    view: ClassVar[View] = View(0.0, 0.0, 0.33)
    # point mass, target, walls
    palette: ClassVar = ((0.95, 0.75, 0.4), (0.85, 0.3, 0.3), (0.55, 0.55, 0.6))

    def default_params(self) -> PointMassParams:
        """DMC constants."""
        return PointMassParams()

    def reset(self, key: jax.Array, params: PointMassParams) -> PointMassState:
        """Position uniform within the joint limits, at rest."""
        pos = jax.random.uniform(key, (2,), minval=-POSITION_LIMIT, maxval=POSITION_LIMIT)
        return PointMassState(pos=pos, vel=jnp.zeros(2))

    def step(self, key: jax.Array, endo: PointMassState, action: jax.Array, params: PointMassParams) -> PointMassState:
        """One 0.02 s RK4 step of m x_ddot = gear u - b x_dot per axis; the walls absorb inward velocity."""
        force = params.gear * jnp.clip(jnp.reshape(action, (-1,))[:2], -1.0, 1.0)

        def deriv(y):
            return jnp.concatenate([y[2:], (force - params.damping * y[2:]) / params.mass])

        y = rk4(deriv, jnp.concatenate([endo.pos, endo.vel]), self.dt)
        pos, vel = y[:2], y[2:]
        at_wall = jnp.logical_or(jnp.logical_and(pos >= POSITION_LIMIT, vel > 0), jnp.logical_and(pos <= -POSITION_LIMIT, vel < 0))
        return PointMassState(pos=jnp.clip(pos, -POSITION_LIMIT, POSITION_LIMIT), vel=jnp.where(at_wall, 0.0, vel))

    def reward(self, endo: PointMassState, action: jax.Array, params: PointMassParams) -> jax.Array:
        """DMC's reward: near the target, discounted by at most 20% for large controls."""
        distance = jnp.linalg.norm(endo.pos)
        # the target size is a constant, not a param: `tolerance` needs a static margin
        near_target = tolerance(distance, bounds=(0.0, TARGET_SIZE), margin=TARGET_SIZE)
        u = jnp.clip(jnp.reshape(action, (-1,))[:2], -1.0, 1.0)
        control_reward = tolerance(u, margin=1.0, value_at_margin=0.0, sigmoid="quadratic").mean()
        return near_target * (4.0 + control_reward) / 5.0

    def features(self, endo: PointMassState, params: PointMassParams) -> jax.Array:
        """Position and velocity."""
        return jnp.concatenate([endo.pos, endo.vel])

    def action_space(self, params) -> spaces.Box:
        """Forces along x and y, in [-1, 1]^2."""
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def draw(self, endo: PointMassState, grid, px, palette):
        """Walls, target and the point mass, seen from above; the 1 cm ball is drawn at least 2 px wide."""
        wall_width = jnp.maximum(0.015, 0.6 * px)
        outer = render.sd_box(grid, jnp.zeros(2), jnp.array([ARENA_HALF, ARENA_HALF]) + wall_width)
        inner = render.sd_box(grid, jnp.zeros(2), jnp.array([ARENA_HALF, ARENA_HALF]))
        walls = jnp.maximum(outer, -inner)
        return [
            render.solid(walls, palette[2], px),
            render.solid(render.sd_circle(grid, jnp.zeros(2), jnp.maximum(TARGET_SIZE, 0.75 * px)), palette[1], px),
            render.solid(render.sd_circle(grid, endo.pos, jnp.maximum(0.02, 1.1 * px)), palette[0], px),
        ]

"""DMC-style pendulum swingup, analytic dynamics in JAX.

Constants follow dm_control's `suite/pendulum.xml` and `suite/pendulum.py`:
- a 1 kg point mass (the `mass` sphere) at the end of a massless 0.5 m pole (the `pole` capsule and
  the `base` cylinder have mass 0), so the inertia about the hinge is m L^2 = 0.25 kg m^2;
- hinge damping 0.1 N m s/rad, gravity 9.81 m/s^2;
- a torque motor with gear 1 and control in [-1, 1], weaker than gravity's peak torque
  m g L = 4.9 N m, so the pendulum must be pumped up over several swings;
- timestep 0.02 s, 1000 steps (20 s). MuJoCo's default Euler integrator is replaced by RK4
  (our approximation; undamped, it conserves energy to well under 1% over 200 steps, see the tests);
- reset: hinge angle uniform in [-pi, pi), at rest (`pendulum.py`'s `initialize_episode`);
- reward: `tolerance(cos theta, (cos 8 deg, 1))`, 1 within eight degrees of upright and 0 elsewhere
  (DMC's sparse reward, with `_ANGLE_BOUND = 8` and `_COSINE_BOUND = cos(8 deg)` in `pendulum.py`);
- observation: (cos theta, sin theta, theta_dot), DMC's `orientation` and `velocity`.

Angles: theta = 0 is upright (the mass above the hinge), and the mass sits at L (sin theta, cos theta)
from the hinge.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite.envs import render, trig
from jaxrl_suite.envs.core import Task
from jaxrl_suite.envs.render import View
from jaxrl_suite.envs.tasks.physics import rk4, tolerance, wrap_angle

# DMC pendulum.py: _ANGLE_BOUND = 8 (degrees), _COSINE_BOUND = cos(_ANGLE_BOUND)
ANGLE_BOUND_DEGREES = 8.0
COSINE_BOUND = float(np.cos(np.deg2rad(ANGLE_BOUND_DEGREES)))


@struct.dataclass
class PendulumState:
    """Hinge angle (0 is upright, wrapped to [-pi, pi)) and angular velocity."""

    theta: jax.Array
    theta_dot: jax.Array


@struct.dataclass
class PendulumParams:
    """Physical constants (vmappable, e.g. for domain randomisation)."""

    mass: float = 1.0
    length: float = 0.5
    gravity: float = 9.81
    gear: float = 1.0
    damping: float = 0.1


@dataclasses.dataclass(frozen=True)
class Pendulum(Task):
    """Pendulum swingup: pump a torque-limited pendulum up and hold it within eight degrees of upright."""

    name: ClassVar[str] = "pendulum-swingup"
    version: ClassVar[int] = 1
    stochastic_step: ClassVar[bool] = False  # RK4 of the equations of motion draws nothing
    episode_steps: ClassVar[int] = 1000
    dt: ClassVar[float] = 0.02
    view: ClassVar[View] = View(0.0, 0.0, 0.62)
    # pole, bob, hinge
    palette: ClassVar = ((0.95, 0.8, 0.45), (0.85, 0.45, 0.2), (0.55, 0.55, 0.6))

    def default_params(self) -> PendulumParams:
        """DMC constants."""
        return PendulumParams()

    def reset(self, key: jax.Array, params: PendulumParams) -> PendulumState:
        """Angle uniform in [-pi, pi), at rest."""
        theta = jax.random.uniform(key, minval=-jnp.pi, maxval=jnp.pi)
        return PendulumState(theta=theta, theta_dot=jnp.zeros(()))

    def angular_acceleration(self, theta, theta_dot, torque, p: PendulumParams) -> jax.Array:
        """theta_ddot = (m g L sin theta - b theta_dot + tau) / (m L^2) for a point mass on a massless pole."""
        inertia = p.mass * p.length**2
        return (p.mass * p.gravity * p.length * trig.sin(theta) - p.damping * theta_dot + torque) / inertia

    def step(self, key: jax.Array, endo: PendulumState, action: jax.Array, params: PendulumParams) -> PendulumState:
        """One 0.02 s RK4 step under a clipped torque command."""
        torque = params.gear * jnp.clip(jnp.reshape(action, (-1,))[0], -1.0, 1.0)

        def deriv(y):
            return jnp.stack([y[1], self.angular_acceleration(y[0], y[1], torque, params)])

        y = rk4(deriv, jnp.stack([endo.theta, endo.theta_dot]), self.dt)
        return PendulumState(theta=wrap_angle(y[0]), theta_dot=y[1])

    def reward(self, endo: PendulumState, action: jax.Array, params: PendulumParams) -> jax.Array:
        """DMC's sparse reward: 1 within eight degrees of upright."""
        return tolerance(trig.cos(endo.theta), bounds=(COSINE_BOUND, 1.0))

    def features(self, endo: PendulumState, params: PendulumParams) -> jax.Array:
        """(cos theta, sin theta, theta_dot)."""
        return jnp.stack([trig.cos(endo.theta), trig.sin(endo.theta), endo.theta_dot])

    def endo_vector(self, endo: PendulumState) -> jax.Array:
        """The features: continuous in the angle, so probes can fit it."""
        return self.features(endo, None)

    def action_space(self, params) -> spaces.Box:
        """One torque command in [-1, 1]."""
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def draw(self, endo: PendulumState, grid, px, palette):
        """Pole, bob and hinge; the 2 cm pole is drawn at least a pixel and a half wide."""
        hinge = jnp.zeros(2)
        bob = 0.5 * jnp.stack([trig.sin(endo.theta), trig.cos(endo.theta)])
        pole_radius = jnp.maximum(0.03, 0.75 * px)
        bob_radius = jnp.maximum(0.08, 1.5 * px)
        return [
            render.solid(render.sd_capsule(grid, hinge, bob, pole_radius), palette[0], px),
            render.solid(render.sd_circle(grid, bob, bob_radius), palette[1], px),
            render.solid(render.sd_circle(grid, hinge, jnp.maximum(0.04, px)), palette[2], px),
        ]

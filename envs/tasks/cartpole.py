"""DMC-style cart-pole (balance and swingup), analytic dynamics in JAX.

Constants follow dm_control's `suite/cartpole.xml`: cart mass 1 kg on a slider limited to
+-1.8 m (damping 5e-4), a 1 m pole of 0.1 kg (uniform rod, hinge damping 2e-6), gravity 9.81,
motor gear 10 with control in [-1, 1], timestep 0.01 s integrated with RK4, 1000 steps (10 s).
The reward is dm_control's smooth one: upright * centred * small_control * small_velocity,
each factor built from `tolerance`, so it is 1 at rest upright at the centre and below 1 elsewhere.
Angles: theta = 0 is upright and the pole tip sits at (x + sin theta, cos theta).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite.envs import render, trig
from jaxrl_suite.envs.core import Task, normal_from_bits, uniform_from_bits
from jaxrl_suite.envs.render import View
from jaxrl_suite.envs.tasks.physics import rk4, tolerance

SLIDER_LIMIT = 1.8


@struct.dataclass
class CartpoleState:
    """Generalised coordinates (x, theta) and velocities (x_dot, theta_dot)."""

    qpos: jax.Array
    qvel: jax.Array


@struct.dataclass
class CartpoleParams:
    """Physical constants (vmappable, e.g. for domain randomisation)."""

    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_length: float = 1.0
    gravity: float = 9.81
    gear: float = 10.0
    slider_damping: float = 5e-4
    hinge_damping: float = 2e-6


@dataclasses.dataclass(frozen=True)
class Cartpole(Task):
    """Cart-pole: swing the pole up (swingup) or keep it up (balance) by pushing the cart."""

    swingup: bool = False

    version: ClassVar[int] = 1
    stochastic_step: ClassVar[bool] = False  # RK4 of the equations of motion draws nothing
    episode_steps: ClassVar[int] = 1000
    dt: ClassVar[float] = 0.01
    view: ClassVar[View] = View(0.0, 0.25, 2.3)
    # cart, pole, track
    palette: ClassVar = ((0.85, 0.55, 0.25), (0.95, 0.8, 0.45), (0.55, 0.55, 0.6))

    @property
    def name(self) -> str:  # type: ignore[override]
        """Task name."""
        return "cartpole-swingup" if self.swingup else "cartpole-balance"

    def default_params(self) -> CartpoleParams:
        """DMC constants."""
        return CartpoleParams()

    def reset(self, key: jax.Array, params: CartpoleParams) -> CartpoleState:
        """DMC's initial state: hanging down (swingup) or near upright (balance).

        One random word per coordinate (position, angle, then the two velocities), drawn in one
        threefry call and turned into floats as `jax.random.uniform` / `normal` would.
        """
        bits = jax.random.bits(key, (4,), jnp.uint32)
        if self.swingup:
            x = 0.01 * normal_from_bits(bits[0])
            theta = jnp.pi + 0.01 * normal_from_bits(bits[1])
        else:
            x = uniform_from_bits(bits[0], -0.1, 0.1)
            theta = uniform_from_bits(bits[1], -0.034, 0.034)
        qvel = 0.01 * normal_from_bits(bits[2:4])
        return CartpoleState(qpos=jnp.stack([x, theta]), qvel=qvel)

    def _accelerations(self, q, qd, force, p: CartpoleParams):
        """Solve the Lagrangian equations of a cart with a uniform-rod pole for (x_ddot, theta_ddot)."""
        theta, theta_dot = q[1], qd[1]
        half = 0.5 * p.pole_length
        inertia = p.pole_mass * p.pole_length**2 / 12.0 + p.pole_mass * half**2  # about the hinge
        ml = p.pole_mass * half
        c, s = trig.cos(theta), trig.sin(theta)
        # [M, ml c; ml c, I] [x_dd; th_dd] = [F - b_x x_d + ml s th_d^2; ml g s - b_th th_d]
        m11 = p.cart_mass + p.pole_mass
        m12 = ml * c
        rhs1 = force - p.slider_damping * qd[0] + ml * s * theta_dot**2
        rhs2 = ml * p.gravity * s - p.hinge_damping * theta_dot
        det = m11 * inertia - m12 * m12
        x_dd = (inertia * rhs1 - m12 * rhs2) / det
        th_dd = (m11 * rhs2 - m12 * rhs1) / det
        return jnp.stack([x_dd, th_dd])

    def step(self, key: jax.Array, endo: CartpoleState, action: jax.Array, params: CartpoleParams) -> CartpoleState:
        """One 0.01 s RK4 step; the slider's end stops absorb the cart's outward velocity."""
        force = params.gear * jnp.clip(jnp.reshape(action, (-1,))[0], -1.0, 1.0)

        def deriv(y):
            return jnp.concatenate([y[2:], self._accelerations(y[:2], y[2:], force, params)])

        y = rk4(deriv, jnp.concatenate([endo.qpos, endo.qvel]), self.dt)
        x = jnp.clip(y[0], -SLIDER_LIMIT, SLIDER_LIMIT)
        at_stop = jnp.logical_or(jnp.logical_and(y[0] >= SLIDER_LIMIT, y[2] > 0), jnp.logical_and(y[0] <= -SLIDER_LIMIT, y[2] < 0))
        x_dot = jnp.where(at_stop, 0.0, y[2])
        return CartpoleState(qpos=jnp.stack([x, y[1]]), qvel=jnp.stack([x_dot, y[3]]))

    def reward(self, endo: CartpoleState, action: jax.Array, params: CartpoleParams) -> jax.Array:
        """dm_control's smooth cart-pole reward."""
        upright = (trig.cos(endo.qpos[1]) + 1.0) / 2.0
        centered = (1.0 + tolerance(endo.qpos[0], margin=2.0)) / 2.0
        u = jnp.clip(jnp.reshape(action, (-1,))[0], -1.0, 1.0)
        small_control = (4.0 + tolerance(u, margin=1.0, value_at_margin=0.0, sigmoid="quadratic")) / 5.0
        small_velocity = (1.0 + tolerance(endo.qvel[1], margin=5.0)) / 2.0
        return upright * centered * small_control * small_velocity

    def features(self, endo: CartpoleState, params: CartpoleParams) -> jax.Array:
        """DMC's observation: cart position, pole cos/sin, cart and pole velocities."""
        x, theta = endo.qpos
        return jnp.stack([x, trig.cos(theta), trig.sin(theta), endo.qvel[0], endo.qvel[1]])

    def endo_vector(self, endo: CartpoleState) -> jax.Array:
        """(x, cos theta, sin theta, x_dot, theta_dot): continuous in the angle, so probes can fit it."""
        return self.features(endo, None)

    def action_space(self, params) -> spaces.Box:
        """One force command in [-1, 1]."""
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def draw(self, endo: CartpoleState, grid, px, palette):
        """Track, cart and pole."""
        x, theta = endo.qpos[0], endo.qpos[1]
        pivot = jnp.stack([x, 0.0])
        tip = pivot + jnp.stack([trig.sin(theta), trig.cos(theta)])
        # thicken parts to at least ~1.5 px so the cart stays visible beside the pole at 16 px
        cart_half = jnp.array([max(0.2, 1.5 * px), max(0.1, 1.0 * px)])
        return [
            render.solid(render.sd_box(grid, jnp.array([0.0, -0.13]), jnp.array([SLIDER_LIMIT + 0.2, max(0.025, 0.3 * px)])), palette[2], px),
            render.solid(render.sd_box(grid, pivot, cart_half), palette[0], px),
            render.solid(render.sd_capsule(grid, pivot, tip, max(0.07, 0.45 * px)), palette[1], px),
        ]

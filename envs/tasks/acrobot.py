"""DMC-style acrobot swingup, analytic two-link (Spong) dynamics in JAX.

Constants follow dm_control's `suite/acrobot.xml` and `suite/acrobot.py`:
- two links of 1 m and 1 kg each (`upper_arm`, `lower_arm`: capsules with the default mass 1);
  we model them as uniform rods (our approximation: the 5 cm capsule radius and its rounded ends
  change the inertia by under 1%), so the centre of mass is at 0.5 m and I = m l^2 / 12;
- joint damping 0.05 N m s/rad on both hinges (the XML's default), gravity 9.81 m/s^2;
- only the elbow is actuated: a motor with gear 2 and control in [-1, 1];
- timestep 0.01 s with RK4 (the XML asks for MuJoCo's RK4 integrator), 1000 steps (10 s);
- reset: both joint angles uniform in [-pi, pi), at rest (`acrobot.py`'s `initialize_episode`);
- reward: DMC's dense swingup, `tolerance(|tip - target|, bounds=(0, 0.2), margin=1)`, with the
  target 2 m above the shoulder (the `target` site of radius 0.2 at z = 4, shoulder at z = 2);
- observation: cos/sin of both links' absolute orientations (DMC's `orientations`, read from the
  bodies' rotation matrices, so the lower link's angle is theta1 + theta2) and both joint velocities.

Equations of motion: Spong (1995), "The swing up control problem for the Acrobot", with angles
measured from upright as in DMC (theta1 = theta2 = 0 is the arm standing straight up, and the tip
sits at l1 (sin t1, cos t1) + l2 (sin(t1 + t2), cos(t1 + t2)) from the shoulder):
    D(q) q_ddot + C(q, q_dot) + b q_dot = G(q) + (0, gear u),
with D the 2 x 2 mass matrix, C the Coriolis/centrifugal terms and G = -dV/dq for the potential
V = g (m1 lc1 cos t1 + m2 (l1 cos t1 + lc2 cos(t1 + t2))).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite.envs import render, trig
from jaxrl_suite.envs.core import Task
from jaxrl_suite.envs.render import View
from jaxrl_suite.envs.tasks.physics import rk4, tolerance, wrap_angle

TARGET = (0.0, 2.0)  # the target site, relative to the shoulder
TARGET_RADIUS = 0.2  # acrobot.xml: site "target" size 0.2


@struct.dataclass
class AcrobotState:
    """Shoulder and elbow angles (0 is straight up, wrapped to [-pi, pi)) and their velocities."""

    qpos: jax.Array
    qvel: jax.Array


@struct.dataclass
class AcrobotParams:
    """Physical constants (vmappable, e.g. for domain randomisation)."""

    link_mass1: float = 1.0
    link_mass2: float = 1.0
    link_length1: float = 1.0
    link_length2: float = 1.0
    gravity: float = 9.81
    gear: float = 2.0
    damping: float = 0.05


def link_positions(qpos: jax.Array, link_length1: float = 1.0, link_length2: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Elbow and tip positions relative to the shoulder, y up."""
    t1, t12 = qpos[0], qpos[0] + qpos[1]
    elbow = link_length1 * jnp.stack([trig.sin(t1), trig.cos(t1)])
    tip = elbow + link_length2 * jnp.stack([trig.sin(t12), trig.cos(t12)])
    return elbow, tip


def mass_matrix(qpos: jax.Array, p: AcrobotParams) -> jax.Array:
    """Spong's D(q) for uniform rods (centre of mass at half length, I = m l^2 / 12)."""
    lc1, lc2 = 0.5 * p.link_length1, 0.5 * p.link_length2
    i1 = p.link_mass1 * p.link_length1**2 / 12.0
    i2 = p.link_mass2 * p.link_length2**2 / 12.0
    cos2 = trig.cos(qpos[1])
    d11 = p.link_mass1 * lc1**2 + p.link_mass2 * (p.link_length1**2 + lc2**2 + 2.0 * p.link_length1 * lc2 * cos2) + i1 + i2
    d12 = p.link_mass2 * (lc2**2 + p.link_length1 * lc2 * cos2) + i2
    d22 = p.link_mass2 * lc2**2 + i2
    return jnp.array([[d11, d12], [d12, d22]])


def potential_energy(qpos: jax.Array, p: AcrobotParams) -> jax.Array:
    """Gravitational potential relative to the shoulder height."""
    lc1, lc2 = 0.5 * p.link_length1, 0.5 * p.link_length2
    t1, t12 = qpos[0], qpos[0] + qpos[1]
    return p.gravity * (p.link_mass1 * lc1 * trig.cos(t1) + p.link_mass2 * (p.link_length1 * trig.cos(t1) + lc2 * trig.cos(t12)))


@dataclasses.dataclass(frozen=True)
class Acrobot(Task):
    """Acrobot swingup: bring the tip of an elbow-actuated double pendulum up to the target."""

    name: ClassVar[str] = "acrobot-swingup"
    version: ClassVar[int] = 1
    stochastic_step: ClassVar[bool] = False  # RK4 of the equations of motion draws nothing
    episode_steps: ClassVar[int] = 1000
    dt: ClassVar[float] = 0.01
    view: ClassVar[View] = View(0.0, 0.0, 2.3)
    # links, target, joints
    palette: ClassVar = ((0.95, 0.75, 0.4), (0.85, 0.3, 0.3), (0.55, 0.55, 0.6))

    def default_params(self) -> AcrobotParams:
        """DMC constants."""
        return AcrobotParams()

    def reset(self, key: jax.Array, params: AcrobotParams) -> AcrobotState:
        """Both angles uniform in [-pi, pi), at rest."""
        qpos = jax.random.uniform(key, (2,), minval=-jnp.pi, maxval=jnp.pi)
        return AcrobotState(qpos=qpos, qvel=jnp.zeros(2))

    def accelerations(self, qpos, qvel, torque, p: AcrobotParams) -> jax.Array:
        """Solve D q_ddot = G - C - b q_dot + (0, tau) for (t1_ddot, t2_ddot)."""
        lc2 = 0.5 * p.link_length2
        h = p.link_mass2 * p.link_length1 * lc2 * trig.sin(qpos[1])
        # Coriolis and centrifugal terms (Spong 1995, eq. 2-3)
        coriolis = jnp.stack([-h * (2.0 * qvel[0] * qvel[1] + qvel[1] ** 2), h * qvel[0] ** 2])
        gravity = -jax.grad(potential_energy)(qpos, p)
        force = gravity - coriolis - p.damping * qvel + jnp.stack([0.0, torque])
        d = mass_matrix(qpos, p)
        # 2 x 2 solve by Cramer's rule: much cheaper than a batched LAPACK call on CPU
        det = d[0, 0] * d[1, 1] - d[0, 1] * d[1, 0]
        return jnp.stack([d[1, 1] * force[0] - d[0, 1] * force[1], d[0, 0] * force[1] - d[1, 0] * force[0]]) / det

    def step(self, key: jax.Array, endo: AcrobotState, action: jax.Array, params: AcrobotParams) -> AcrobotState:
        """One 0.01 s RK4 step with the elbow torque."""
        torque = params.gear * jnp.clip(jnp.reshape(action, (-1,))[0], -1.0, 1.0)

        def deriv(y):
            return jnp.concatenate([y[2:], self.accelerations(y[:2], y[2:], torque, params)])

        y = rk4(deriv, jnp.concatenate([endo.qpos, endo.qvel]), self.dt)
        return AcrobotState(qpos=wrap_angle(y[:2]), qvel=y[2:])

    def reward(self, endo: AcrobotState, action: jax.Array, params: AcrobotParams) -> jax.Array:
        """DMC's dense swingup reward: 1 with the tip inside the target, decaying over 1 m."""
        _, tip = link_positions(endo.qpos, params.link_length1, params.link_length2)
        distance = jnp.linalg.norm(tip - jnp.asarray(TARGET))
        return tolerance(distance, bounds=(0.0, TARGET_RADIUS), margin=1.0)

    def features(self, endo: AcrobotState, params: AcrobotParams) -> jax.Array:
        """cos/sin of the upper and lower links' absolute angles, then the two joint velocities."""
        t1, t12 = endo.qpos[0], endo.qpos[0] + endo.qpos[1]
        return jnp.stack([trig.cos(t1), trig.sin(t1), trig.cos(t12), trig.sin(t12), endo.qvel[0], endo.qvel[1]])

    def endo_vector(self, endo: AcrobotState) -> jax.Array:
        """The features: continuous in the angles, so probes can fit them."""
        return self.features(endo, None)

    def action_space(self, params) -> spaces.Box:
        """One elbow torque command in [-1, 1]."""
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def draw(self, endo: AcrobotState, grid, px, palette):
        """Target ring, the two links (drawn with DMC's 1 m lengths) and the joints."""
        shoulder = jnp.zeros(2)
        elbow, tip = link_positions(endo.qpos)
        link_radius = jnp.maximum(0.1, 0.75 * px)
        joint_radius = jnp.maximum(0.06, 0.5 * px)
        links = jnp.minimum(render.sd_capsule(grid, shoulder, elbow, link_radius), render.sd_capsule(grid, elbow, tip, link_radius))
        joints = jnp.minimum(render.sd_circle(grid, shoulder, joint_radius), render.sd_circle(grid, elbow, joint_radius))
        return [
            render.solid(render.sd_ring(grid, jnp.asarray(TARGET), TARGET_RADIUS, jnp.maximum(0.04, 0.5 * px)), palette[1], px),
            render.solid(links, palette[0], px),
            render.solid(joints, palette[2], px),
        ]

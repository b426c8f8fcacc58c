"""DMC-style reacher (easy): a planar two-link arm touching a random target, analytic dynamics in JAX.

Constants follow dm_control's `suite/reacher.xml` and `suite/reacher.py`:
- geometry: the shoulder at the origin, an `arm` link of 0.12 m, then the `hand` body whose
  capsule is 0.10 m long and whose `finger` (a 1 cm sphere) sits 0.12 m from the wrist, so the
  finger reaches at most 0.24 m from the shoulder; the arm moves in the horizontal plane, so
  gravity plays no part and contacts are disabled;
- masses: the XML gives none, so MuJoCo uses density 1000 kg/m^3 on the 1 cm-radius geoms:
  arm capsule 0.0419 kg, hand capsule 0.0356 kg, finger sphere 0.0042 kg. We model each capsule
  as a uniform rod (our approximation; the rounded ends change the inertia by a few %) and the
  finger as a point mass, giving about the shoulder I_arm = m L^2 / 3 = 2.01e-4 kg m^2 and, for
  the hand body about the wrist, mass 0.0398 kg, centre of mass 0.0574 m from the wrist and
  I_hand = 0.0356 * 0.1^2 / 3 + 0.0042 * 0.12^2 = 1.79e-4 kg m^2;
- joint damping 0.01 N m s/rad on both hinges; motors with gear 0.05 and control in [-1, 1]^2
  (so a joint's terminal speed is gear / damping = 5 rad/s, reached within ~0.15 s);
- the wrist is limited to [-160, 160] degrees (a hard stop here, MuJoCo's soft limit in DMC);
  the shoulder turns freely;
- timestep 0.02 s, 1000 steps (20 s). DMC integrates with MuJoCo's Euler, which treats joint
  damping implicitly; that matters here because the extended arm's smallest mass-matrix
  eigenvalue is only ~3.8e-5 kg m^2, so damping decays that mode at b / 3.8e-5 = 263 /s, and an
  explicit 0.02 s step (RK4's stability limit is rate * step < 2.79) diverges. We take 4 RK4
  substeps of 5 ms (rate * step = 1.3; our approximation of MuJoCo's integrator);
- reset (`reacher.py`): shoulder uniform in [-pi, pi), wrist uniform in its range, at rest; the
  target at an angle uniform in [0, 2 pi) and a radius uniform in [0.05, 0.20];
- reward: `tolerance(|finger - target|, (0, 0.05 + 0.01))`, the sum of the easy target size and the
  finger size: 1 while the finger touches the target, 0 otherwise (sparse);
- observation: cos/sin of both joint angles (DMC gives the raw angles), the finger-to-target
  vector and both joint velocities.

Two-link planar dynamics with link inertias about their own joints (I1, I2), the hand's mass m2
and centre-of-mass distance c2, and link length l1:
    D = [[I1 + I2 + m2 l1^2 + 2 h cos q2, I2 + h cos q2], [I2 + h cos q2, I2]],  h = m2 l1 c2,
    D q_ddot = tau - b q_dot + h sin q2 (q2_dot (2 q1_dot + q2_dot), -q1_dot^2).
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

ARM_LENGTH = 0.12  # shoulder to wrist
FINGER_OFFSET = 0.12  # wrist to finger
HAND_CAPSULE_LENGTH = 0.10
WRIST_LIMIT = float(np.deg2rad(160.0))
FINGER_SIZE = 0.01
TARGET_SIZE_EASY = 0.05
TARGET_RADIUS_RANGE = (0.05, 0.20)


@struct.dataclass
class ReacherState:
    """Shoulder and wrist angles, their velocities, and the target's position."""

    qpos: jax.Array
    qvel: jax.Array
    target: jax.Array


@struct.dataclass
class ReacherParams:
    """Physical constants (vmappable, e.g. for domain randomisation); see the module docstring."""

    arm_inertia: float = 2.01e-4  # about the shoulder
    hand_inertia: float = 1.79e-4  # hand capsule and finger, about the wrist
    hand_mass: float = 0.0398
    hand_com: float = 0.0574  # wrist to the hand body's centre of mass
    damping: float = 0.01
    gear: float = 0.05
    target_size: float = TARGET_SIZE_EASY


def finger_position(qpos: jax.Array) -> jax.Array:
    """The finger's position relative to the shoulder."""
    q1, q12 = qpos[0], qpos[0] + qpos[1]
    return ARM_LENGTH * jnp.stack([trig.cos(q1), trig.sin(q1)]) + FINGER_OFFSET * jnp.stack([trig.cos(q12), trig.sin(q12)])


@dataclasses.dataclass(frozen=True)
class Reacher(Task):
    """Reacher (easy): move a two-link arm so that its finger touches a randomly placed target."""

    name: ClassVar[str] = "reacher-easy"
    version: ClassVar[int] = 1
    stochastic_step: ClassVar[bool] = False  # RK4 of the equations of motion draws nothing
    episode_steps: ClassVar[int] = 1000
    dt: ClassVar[float] = 0.02
    substeps: ClassVar[int] = 4  # RK4 substeps per control step, for the stiff damping (module docstring)
    view: ClassVar[View] = View(0.0, 0.0, 0.3)
    # arm links, finger, target, shoulder
    palette: ClassVar = ((0.95, 0.75, 0.4), (0.3, 0.75, 0.95), (0.85, 0.3, 0.3), (0.55, 0.55, 0.6))

    def default_params(self) -> ReacherParams:
        """DMC-derived constants."""
        return ReacherParams()

    def reset(self, key: jax.Array, params: ReacherParams) -> ReacherState:
        """Random arm pose at rest and a target in the annulus 0.05 <= r <= 0.20."""
        k_shoulder, k_wrist, k_angle, k_radius = jax.random.split(key, 4)
        qpos = jnp.stack(
            [
                jax.random.uniform(k_shoulder, minval=-jnp.pi, maxval=jnp.pi),
                jax.random.uniform(k_wrist, minval=-WRIST_LIMIT, maxval=WRIST_LIMIT),
            ]
        )
        angle = jax.random.uniform(k_angle, minval=0.0, maxval=2.0 * jnp.pi)
        radius = jax.random.uniform(k_radius, minval=TARGET_RADIUS_RANGE[0], maxval=TARGET_RADIUS_RANGE[1])
        target = radius * jnp.stack([trig.cos(angle), trig.sin(angle)])
        return ReacherState(qpos=qpos, qvel=jnp.zeros(2), target=target)

    def accelerations(self, qpos, qvel, torque, p: ReacherParams) -> jax.Array:
        """Solve the two-link equations of motion (module docstring) for the joint accelerations."""
        h = p.hand_mass * ARM_LENGTH * p.hand_com
        c2, s2 = trig.cos(qpos[1]), trig.sin(qpos[1])
        d11 = p.arm_inertia + p.hand_inertia + p.hand_mass * ARM_LENGTH**2 + 2.0 * h * c2
        d12 = p.hand_inertia + h * c2
        d22 = p.hand_inertia
        # Coriolis and centrifugal forces of the planar two-link arm
        bias = h * s2 * jnp.stack([qvel[1] * (2.0 * qvel[0] + qvel[1]), -qvel[0] ** 2])
        f = torque - p.damping * qvel + bias
        # 2 x 2 solve by Cramer's rule: much cheaper than a batched LAPACK call on CPU
        det = d11 * d22 - d12 * d12
        return jnp.stack([d22 * f[0] - d12 * f[1], d11 * f[1] - d12 * f[0]]) / det

    def step(self, key: jax.Array, endo: ReacherState, action: jax.Array, params: ReacherParams) -> ReacherState:
        """One 0.02 s control step of 4 RK4 substeps; the wrist's stop absorbs the velocity pushing into it."""
        torque = params.gear * jnp.clip(jnp.reshape(action, (-1,))[:2], -1.0, 1.0)

        def deriv(y):
            return jnp.concatenate([y[2:], self.accelerations(y[:2], y[2:], torque, params)])

        def substep(y, _):
            return rk4(deriv, y, self.dt / self.substeps), None

        y, _ = jax.lax.scan(substep, jnp.concatenate([endo.qpos, endo.qvel]), None, length=self.substeps)
        wrist = jnp.clip(y[1], -WRIST_LIMIT, WRIST_LIMIT)
        at_stop = jnp.logical_or(jnp.logical_and(y[1] >= WRIST_LIMIT, y[3] > 0), jnp.logical_and(y[1] <= -WRIST_LIMIT, y[3] < 0))
        qpos = jnp.stack([wrap_angle(y[0]), wrist])
        qvel = jnp.stack([y[2], jnp.where(at_stop, 0.0, y[3])])
        return ReacherState(qpos=qpos, qvel=qvel, target=endo.target)

    def reward(self, endo: ReacherState, action: jax.Array, params: ReacherParams) -> jax.Array:
        """DMC's sparse reward: 1 while the finger touches the target."""
        distance = jnp.linalg.norm(endo.target - finger_position(endo.qpos))
        return tolerance(distance, bounds=(0.0, params.target_size + FINGER_SIZE))

    def features(self, endo: ReacherState, params: ReacherParams) -> jax.Array:
        """cos/sin of shoulder and wrist, finger-to-target vector, joint velocities (8 values)."""
        q = endo.qpos
        to_target = endo.target - finger_position(q)
        return jnp.concatenate([jnp.stack([trig.cos(q[0]), trig.sin(q[0]), trig.cos(q[1]), trig.sin(q[1])]), to_target, endo.qvel])

    def endo_vector(self, endo: ReacherState) -> jax.Array:
        """cos/sin of both joints, joint velocities and the target position (8 values)."""
        q = endo.qpos
        return jnp.concatenate([jnp.stack([trig.cos(q[0]), trig.sin(q[0]), trig.cos(q[1]), trig.sin(q[1])]), endo.qvel, endo.target])

    def action_space(self, params) -> spaces.Box:
        """Shoulder and wrist torque commands in [-1, 1]^2."""
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def draw(self, endo: ReacherState, grid, px, palette):
        """Target (easy size), arm, finger and shoulder, seen from above; thin parts are thickened to pixels."""
        shoulder = jnp.zeros(2)
        q1, q12 = endo.qpos[0], endo.qpos[0] + endo.qpos[1]
        wrist = ARM_LENGTH * jnp.stack([trig.cos(q1), trig.sin(q1)])
        hand_end = wrist + HAND_CAPSULE_LENGTH * jnp.stack([trig.cos(q12), trig.sin(q12)])
        finger = finger_position(endo.qpos)
        link_radius = jnp.maximum(0.012, 0.75 * px)
        arm = jnp.minimum(render.sd_capsule(grid, shoulder, wrist, link_radius), render.sd_capsule(grid, wrist, hand_end, link_radius))
        return [
            render.solid(render.sd_circle(grid, endo.target, TARGET_SIZE_EASY), palette[2], px),
            render.solid(arm, palette[0], px),
            render.solid(render.sd_circle(grid, finger, jnp.maximum(0.018, 1.1 * px)), palette[1], px),
            render.solid(render.sd_circle(grid, shoulder, jnp.maximum(0.015, 0.75 * px)), palette[3], px),
        ]

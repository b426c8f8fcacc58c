"""Pixel distractor: a camera that wanders, shifting, zooming and (optionally) rolling the view.

The Distracting Control Suite (Stone et al. 2021, section 3) moves the camera on a sphere around
the system with a velocity random walk, up to +-pi/2 * scale (scale 0.1 / 0.2 / 0.3 for easy /
medium / hard). Our scenes are planar, so the camera moves in the plane instead: a latent
u in [-1, 1]^4 (shift x, shift y, log2 zoom, roll) with velocity v follows

    v' = clip(v + 0.01 eps, -0.05, 0.05),   u' = u + v'   (mirrored at +-1, flipping v),

and the view shows world point c + R(roll) (zoom (g - c)) + shift for each pixel g, with
shift = scale * view half-width * u_xy (at most 30 % of the half-width at hard, so the system
stays mostly in frame), zoom = 2^(scale * u_zoom) and roll = roll_fraction * scale * pi/2 * u_roll,
the DCS angle range. The exogenous state is (u, v), whose law does not depend on the difficulty;
scale 0 leaves the pixel grid untouched bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_suite.envs import trig
from jaxrl_suite.envs.core import Distractor, Task

VELOCITY_STD = 0.01  # random-walk std of the latent velocity per step
MAX_VELOCITY = 0.05  # latent units per step: a full sweep of the range takes at least 40 steps


@struct.dataclass
class CameraParams:
    """Extent of the camera's motion (DCS scale) and how much of it is roll."""

    scale: float = 0.2
    roll: float = 1.0  # 0: shift and zoom only; 1: also roll up to +-pi/2 * scale


@struct.dataclass
class CameraState:
    """Latent pose (shift x, shift y, log2 zoom, roll) in [-1, 1] and its velocity."""

    pose: jax.Array
    velocity: jax.Array


@dataclasses.dataclass(frozen=True)
class CameraDistractor(Distractor):
    """Random-walk shift, zoom and roll of the view (pixels)."""

    # the task's view, so zoom and roll pivot on its centre and shifts scale with its size
    view_cx: float = 0.0
    view_cy: float = 0.0
    view_half: float = 1.0

    name: ClassVar[str] = "camera"
    obs_modes: ClassVar[tuple[str, ...]] = ("pixels",)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "none": {"scale": 0.0},
        "easy": {"scale": 0.1},
        "medium": {"scale": 0.2},
        "hard": {"scale": 0.3},
    }
    ranges: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {
        "train": {"scale": (0.05, 0.2)},
        "test": {"scale": (0.25, 0.4)},
    }

    def __post_init__(self):
        if not self.view_half > 0:
            raise ValueError(f"view_half={self.view_half!r} must be positive")

    @classmethod
    def build(cls, task: Task, obs: str, image_size: int, action_repeat: int = 1, **kwargs: Any) -> "CameraDistractor":
        """A camera around the task's view."""
        cx, cy, half = task.view
        return cls(view_cx=float(cx), view_cy=float(cy), view_half=float(half), **kwargs)

    def default_params(self) -> CameraParams:
        """Medium difficulty."""
        return CameraParams()

    def init(self, key: jax.Array, params: CameraParams) -> CameraState:
        """Pose uniform in the range, at rest."""
        pose = jax.random.uniform(key, (4,), minval=-1.0, maxval=1.0)
        return CameraState(pose=pose, velocity=jnp.zeros((4,), jnp.float32))

    def step(self, key: jax.Array, exo: CameraState, params: CameraParams) -> CameraState:
        """Velocity random walk, position integration, mirror walls at +-1."""
        velocity = jnp.clip(exo.velocity + VELOCITY_STD * jax.random.normal(key, (4,)), -MAX_VELOCITY, MAX_VELOCITY)
        pose = exo.pose + velocity
        outside = jnp.abs(pose) > 1.0
        pose = jnp.clip(jnp.where(outside, jnp.sign(pose) * 2.0 - pose, pose), -1.0, 1.0)
        return CameraState(pose=pose, velocity=jnp.where(outside, -velocity, velocity))

    def camera(self, exo: CameraState, params: CameraParams, grid: jax.Array) -> jax.Array:
        """World point seen at each pixel: zoom and roll about the view centre, then shift."""
        shift = params.scale * self.view_half * exo.pose[:2]
        zoom = jnp.exp2(params.scale * exo.pose[2])
        angle = params.roll * params.scale * (jnp.pi / 2) * exo.pose[3]
        c, s = trig.cos(angle), trig.sin(angle)
        d = grid - jnp.array([self.view_cx, self.view_cy])
        zx, zy = zoom * d[..., 0], zoom * d[..., 1]
        moved = jnp.stack([c * zx - s * zy, s * zx + c * zy], axis=-1)
        # adding the displacement (not rebuilding from the centre) keeps scale 0 an exact identity
        return grid + (moved - d) + shift

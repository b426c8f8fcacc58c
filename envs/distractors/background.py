"""Pixel distractor: a time-correlated procedural background texture.

The texture is a few (static `num_waves`) drifting plane waves, each with a direction, a phase
and a colour; at a point p of the world, wave c has weight w_c(p) = (1 + sin(k_c . p + phi_c)) / 2
with k_c = f_c (cos a_c, sin a_c) and spatial frequency f_c = 2 pi (c + 1) / view width, and the
texture is the weight-averaged colour sum_c w_c col_c / sum_c w_c: moving, interfering colour
stripes that fill the frame, in the spirit of the natural-video backgrounds of DBC and the
Distracting Control Suite but with a low-dimensional Markov latent instead of a video file.

The latent (the exogenous state, C x 6 numbers) follows an AR(1) with correlation `rho`:
- drift velocity u_c' = rho u_c + sqrt(1 - rho^2) eps (stationary N(0, 1)), and the phase
  phi_c' = phi_c + drift * u_c' (mod 2 pi), so the stripes travel at a time-correlated speed;
- direction a_c' = rho a_c + sqrt(1 - rho^2) * 0.5 eps (slowly turning stripes);
- colour logits l_c' = rho l_c + sqrt(1 - rho^2) eps, col_c = sigmoid(l_c).
The frame's background is (1 - contrast) * task background + contrast * texture, so
`contrast` = 0 is exactly the undistracted background.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_suite.envs import trig
from jaxrl_suite.envs.core import Distractor, Task

ANGLE_SCALE = 0.5  # stationary std of each wave's direction around its starting angle (radians)


@struct.dataclass
class BackgroundParams:
    """Contrast of the texture, drift speed of its phases, time correlation of its latent."""

    contrast: float = 0.5  # 0: the task's plain background
    drift: float = 0.1  # typical phase change per step (radians)
    rho: float = 0.95  # AR(1) correlation per step of the latent


@struct.dataclass
class BackgroundState:
    """Per-wave phase, drift velocity, direction (C,) and colour logits (C, 3)."""

    phase: jax.Array
    velocity: jax.Array
    angle: jax.Array
    color_logit: jax.Array


@dataclasses.dataclass(frozen=True)
class BackgroundDistractor(Distractor):
    """A drifting sum of coloured plane waves behind the system (pixels)."""

    num_waves: int = 4
    view_half: float = 1.0  # the task view's half-width, setting the waves' spatial frequencies

    name: ClassVar[str] = "background"
    obs_modes: ClassVar[tuple[str, ...]] = ("pixels",)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "none": {"contrast": 0.0},
        "easy": {"contrast": 0.3, "drift": 0.05, "rho": 0.9},
        "medium": {"contrast": 0.5, "drift": 0.1, "rho": 0.95},
        "hard": {"contrast": 0.8, "drift": 0.2, "rho": 0.98},
    }
    ranges: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {
        "train": {"contrast": (0.2, 0.5), "drift": (0.03, 0.1)},
        "test": {"contrast": (0.6, 0.9), "drift": (0.15, 0.3)},
    }

    def __post_init__(self):
        if not isinstance(self.num_waves, int) or isinstance(self.num_waves, bool) or self.num_waves < 1:
            raise ValueError(f"num_waves={self.num_waves!r} must be a positive integer")
        if not self.view_half > 0:
            raise ValueError(f"view_half={self.view_half!r} must be positive")

    @classmethod
    def build(cls, task: Task, obs: str, image_size: int, action_repeat: int = 1, **kwargs: Any) -> "BackgroundDistractor":
        """Waves scaled to the task's view."""
        return cls(view_half=float(task.view[2]), **kwargs)

    def default_params(self) -> BackgroundParams:
        """Medium difficulty."""
        return BackgroundParams()

    def init(self, key: jax.Array, params: BackgroundParams) -> BackgroundState:
        """Phases and directions uniform on the circle, drift and colour logits from N(0, 1)."""
        k_phase, k_vel, k_angle, k_col = jax.random.split(key, 4)
        c = self.num_waves
        return BackgroundState(
            phase=jax.random.uniform(k_phase, (c,), maxval=2.0 * jnp.pi),
            velocity=jax.random.normal(k_vel, (c,)),
            angle=jax.random.uniform(k_angle, (c,), minval=-jnp.pi, maxval=jnp.pi),
            color_logit=jax.random.normal(k_col, (c, 3)),
        )

    def step(self, key: jax.Array, exo: BackgroundState, params: BackgroundParams) -> BackgroundState:
        """AR(1) update of drift, direction and colour; phases advance by the drift."""
        k_vel, k_angle, k_col = jax.random.split(key, 3)
        innovation = jnp.sqrt(1.0 - params.rho**2)
        velocity = params.rho * exo.velocity + innovation * jax.random.normal(k_vel, exo.velocity.shape)
        angle = params.rho * exo.angle + innovation * ANGLE_SCALE * jax.random.normal(k_angle, exo.angle.shape)
        color_logit = params.rho * exo.color_logit + innovation * jax.random.normal(k_col, exo.color_logit.shape)
        phase = jnp.mod(exo.phase + params.drift * velocity, 2.0 * jnp.pi)
        return BackgroundState(phase=phase, velocity=velocity, angle=angle, color_logit=color_logit)

    def texture(self, exo: BackgroundState, grid: jax.Array) -> jax.Array:
        """The texture (H, W, 3) in [0, 1] at world points grid (H, W, 2)."""
        freq = jnp.pi * (jnp.arange(self.num_waves) + 1.0) / self.view_half  # (c + 1) cycles per view width
        kx, ky = freq * trig.cos(exo.angle), freq * trig.sin(exo.angle)
        colors = jax.nn.sigmoid(exo.color_logit)
        # summed wave by wave (static count) so the texture stays one fused elementwise pass;
        # the small floor keeps the colour defined where every wave sits in a trough
        rgb, total = 0.0, 1e-3
        for c in range(self.num_waves):
            w = 0.5 + 0.5 * trig.sin(grid[..., 0] * kx[c] + grid[..., 1] * ky[c] + exo.phase[c])
            rgb = rgb + w[..., None] * colors[c]
            total = total + w
        return rgb / total[..., None]

    def background(self, exo: BackgroundState, params: BackgroundParams, grid: jax.Array, px: float, base: jax.Array) -> jax.Array:
        """Blend the texture into the base background by `contrast`."""
        return base + params.contrast * (self.texture(exo, grid) - base)

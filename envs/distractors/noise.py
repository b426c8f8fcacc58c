"""State distractor: features driven by a low-dimensional AR(1) exogenous process.

The latent z (exo, `latent_dim` values) follows z' = rho z + sqrt(1 - rho^2) eps, eps ~ N(0, I),
stationary at N(0, I) so the scale does not drift with rho. It is shown as `num_noise_features`
features scale * P z / sqrt(latent_dim) through a fixed random projection P (drawn from `seed`
at construction), so many features share a few exogenous causes, as in an exogenous block MDP.
`rho` near 1 makes the features slow, state-like and hard to tell from the system's own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_suite.envs.core import Distractor


@struct.dataclass
class NoiseParams:
    """Feature scale (0 switches the distractor off) and time correlation of the latent."""

    scale: float = 1.0
    rho: float = 0.9


@dataclasses.dataclass(frozen=True)
class NoiseDistractor(Distractor):
    """AR(1) latent noise shown as extra state features."""

    num_noise_features: int = 16
    latent_dim: int = 4
    seed: int = 0

    name: ClassVar[str] = "noise"
    obs_modes: ClassVar[tuple[str, ...]] = ("state",)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "none": {"scale": 0.0, "rho": 0.9},
        "easy": {"scale": 0.3, "rho": 0.5},
        "medium": {"scale": 1.0, "rho": 0.9},
        "hard": {"scale": 2.0, "rho": 0.99},
    }
    ranges: ClassVar[dict[str, dict[str, tuple[float, float]]]] = {
        "train": {"scale": (0.5, 1.0), "rho": (0.8, 0.9)},
        "test": {"scale": (1.5, 2.5), "rho": (0.95, 0.99)},
    }

    def __post_init__(self):
        for field in ("num_noise_features", "latent_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field}={value!r} must be a positive integer")

    def default_params(self) -> NoiseParams:
        """Medium difficulty."""
        return NoiseParams()

    def init(self, key: jax.Array, params: NoiseParams) -> jax.Array:
        """A draw from the stationary distribution N(0, I)."""
        return jax.random.normal(key, (self.latent_dim,))

    def step(self, key: jax.Array, exo: jax.Array, params: NoiseParams) -> jax.Array:
        """AR(1) update with unit stationary variance."""
        eps = jax.random.normal(key, exo.shape)
        return params.rho * exo + jnp.sqrt(1.0 - params.rho**2) * eps

    @property
    def num_features(self) -> int:
        """Number of appended features."""
        return self.num_noise_features

    def projection(self) -> jax.Array:
        """The fixed mixing matrix P (features x latent), a constant of the construction seed."""
        # drawn at trace time, so a jitted step holds P as a constant instead of redrawing it
        with jax.ensure_compile_time_eval():
            return jax.random.normal(jax.random.key(self.seed), (self.num_noise_features, self.latent_dim))

    def features(self, exo: jax.Array, params: NoiseParams) -> jax.Array:
        """scale * P z / sqrt(latent_dim): unit-variance features at scale 1."""
        projection = np.asarray(self.projection())
        # P z as a sum over the (few, static) latent columns: elementwise, so it fuses with the rest
        # of the step instead of being a batched matrix-vector product of its own (slow at this size on CPU)
        mixed = sum(projection[:, j] * exo[..., j, None] for j in range(self.latent_dim))
        return params.scale * mixed / jnp.sqrt(float(self.latent_dim))

"""Networks shared by every agent: MLP torso, a small CNN for uint8 pixels, policy and value heads.

Heads return distrax distributions, so losses call `log_prob`, `entropy` and `sample` without
knowing the action space. Initialisation follows the PPO implementation studies (Huang et al.
2022, "The 37 implementation details of PPO"; Andrychowicz et al. 2021): orthogonal weights with
gain sqrt(2) in the torso, 0.01 on the policy output and 1.0 on the value output, zero biases.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "silu": nn.silu}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called `name`; unknown names list the valid ones."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def orthonormal_columns(matrix: jax.Array) -> jax.Array:
    """Q of the thin QR of a tall (n, m) matrix with R's diagonal positive, by Gram-Schmidt twice (CGS2).

    Matmuls only, no LAPACK: jaxlib's CPU QR kernel splits a batched (vmapped) QR over XLA's
    intra-op thread pool and blocks a pool thread until its pieces finish, so two such QRs
    running at once on a 2-core machine deadlock (every thread parked; seen with 8 vmapped
    seeds' network inits). Gram-Schmidt gives the same Q as `jnp.linalg.qr` with flax's sign
    fix, and reorthogonalising once keeps it orthogonal to float precision (Giraud et al. 2005).
    """
    n, m = matrix.shape

    def add_column(j, q):
        done = (jnp.arange(m) < j).astype(matrix.dtype)  # columns 0..j-1 are finished
        v = matrix[:, j]
        for _ in range(2):
            v = v - q @ (done * (q.T @ v))
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, m, add_column, jnp.zeros_like(matrix))


def orthogonal(gain: float) -> nn.initializers.Initializer:
    """Orthogonal weight initialiser with the given gain (flax's `orthogonal`, computed without LAPACK).

    Same distribution and, up to float error, the same values as `nn.initializers.orthogonal`:
    a Gaussian matrix of shape (max(rows, cols), min(rows, cols)), rows = prod(shape[:-1]), whose
    orthonormalised columns are transposed when rows < cols (see `orthonormal_columns` for why
    not QR).
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialiser needs a shape of rank >= 2, got {tuple(shape)}")
        rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
        normal = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q = orthonormal_columns(normal)
        if rows < cols:
            q = q.T
        return (gain * q.reshape(shape)).astype(dtype)

    return init


class MLP(nn.Module):
    """Dense layers with an activation after each; `output_dim` adds a final linear layer."""

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    output_dim: int | None = None
    output_gain: float = 1.0
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Map (..., D) features to (..., hidden[-1]) or (..., output_dim)."""
        act = activation(self.activation)
        for width in self.hidden_sizes:
            x = nn.Dense(width, kernel_init=orthogonal(np.sqrt(2.0)), bias_init=nn.initializers.zeros)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        if self.output_dim is not None:
            x = nn.Dense(self.output_dim, kernel_init=orthogonal(self.output_gain), bias_init=nn.initializers.zeros)(x)
        return x


class CNNEncoder(nn.Module):
    """Small conv encoder for uint8 images (..., H, W, C): scales to [0, 1], convs, flattens, projects.

    Default strides (2, 2, 1, 1) with 3x3 kernels follow the DrQ/SAC-AE encoder in spirit at a
    CPU-friendly width; `features` is the size of the embedding it returns.
    """

    channels: Sequence[int] = (16, 32, 32)
    strides: Sequence[int] = (2, 2, 1)
    kernel_size: int = 3
    features: int = 64
    activation: str = "relu"

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        """Embed (..., H, W, C) uint8 (or [0, 1] float) images to (..., features)."""
        if len(self.channels) != len(self.strides):
            raise ValueError(f"channels {tuple(self.channels)} and strides {tuple(self.strides)} must have the same length")
        act = activation(self.activation)
        x = image.astype(jnp.float32) / 255.0 if image.dtype == jnp.uint8 else image.astype(jnp.float32)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        for ch, st in zip(self.channels, self.strides):
            x = act(nn.Conv(ch, (self.kernel_size, self.kernel_size), strides=(st, st), padding="VALID", kernel_init=orthogonal(np.sqrt(2.0)))(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.features, kernel_init=orthogonal(np.sqrt(2.0)))(x)
        x = nn.LayerNorm()(x)
        x = act(x)
        return x.reshape(batch_shape + (self.features,))


class CategoricalHead(nn.Module):
    """Logits for `num_actions` discrete actions as a distrax Categorical."""

    num_actions: int
    gain: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.Categorical:
        """Distribution over actions from features (..., D)."""
        logits = nn.Dense(self.num_actions, kernel_init=orthogonal(self.gain), bias_init=nn.initializers.zeros)(x)
        return distrax.Categorical(logits=logits)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent learned log-std (PPO's continuous policy)."""

    action_dim: int
    gain: float = 0.01
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.MultivariateNormalDiag:
        """Distribution over unbounded actions from features (..., D)."""
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal(self.gain), bias_init=nn.initializers.zeros)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape))


class TanhGaussianHead(nn.Module):
    """Gaussian squashed by tanh into (-1, 1) with state-dependent, bounded log-std (SAC, Haarnoja et al. 2018, App. C)."""

    action_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, x: jax.Array) -> distrax.Distribution:
        """Distribution over actions in (-1, 1); log_prob includes the tanh Jacobian."""
        out = nn.Dense(2 * self.action_dim, kernel_init=orthogonal(1.0))(x)
        mean, log_std = jnp.split(out, 2, axis=-1)
        # soft bound keeps gradients alive at the limits (as in DrQ / SAC-AE)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(log_std) + 1.0)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


class QEnsemble(nn.Module):
    """`num_critics` independent Q(s, a) MLPs on the same input, stacked on a leading axis.

    Twin critics with a min target are the clipped double-Q of TD3 (Fujimoto et al. 2018, eq. 10)
    that SAC uses (Haarnoja et al. 2018, Sec. 5); `nn.vmap` evaluates the members as one batched
    computation with independently initialised parameters.
    """

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    num_critics: int = 2
    layer_norm: bool = False

    @nn.compact
    def __call__(self, features: jax.Array, action: jax.Array) -> jax.Array:
        """(..., D) features and (..., A) actions to (num_critics, ...) Q-values."""
        x = jnp.concatenate([features, action.astype(features.dtype)], axis=-1)
        ensemble = nn.vmap(
            MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=self.num_critics
        )
        q = ensemble(tuple(self.hidden_sizes), self.activation, output_dim=1, layer_norm=self.layer_norm)(x)
        return q[..., 0]


class ValueHead(nn.Module):
    """A scalar per input (or `num_outputs` values, e.g. Q-values per discrete action)."""

    num_outputs: int = 1
    gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., D) features to (...,) values, or (..., num_outputs) when num_outputs > 1."""
        v = nn.Dense(self.num_outputs, kernel_init=orthogonal(self.gain), bias_init=nn.initializers.zeros)(x)
        return v[..., 0] if self.num_outputs == 1 else v


@struct.dataclass
class RunningNorm:
    """Running mean and variance of a feature vector, merged batch by batch (Chan et al. 1979)."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> "RunningNorm":
        """Unit statistics with a tiny prior count (avoids a divide-by-zero on the first merge)."""
        return cls(mean=jnp.zeros(shape, jnp.float32), var=jnp.ones(shape, jnp.float32), count=jnp.asarray(1e-4, jnp.float32))

    def update(self, batch: jax.Array) -> "RunningNorm":
        """Merge a batch (..., *shape) into the statistics (parallel-variance formula)."""
        x = batch.reshape((-1,) + self.mean.shape).astype(jnp.float32)
        b_mean, b_var, b_count = jnp.mean(x, axis=0), jnp.var(x, axis=0), jnp.asarray(x.shape[0], jnp.float32)
        delta = b_mean - self.mean
        total = self.count + b_count
        mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        return RunningNorm(mean=mean, var=m2 / total, count=total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        """(x - mean) / std, clipped to +-clip as in PPO's observation normalisation."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)

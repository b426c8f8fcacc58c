"""The endo/exo probe: how much of the controllable state and of the distractor an embedding kept.

Given embeddings z of observations and the env's `endo` and `exo` vectors for the same states
(`info["endo"]`, `info["exo"]`), fit a regression from z to each on a random train split and
report the held-out coefficient of determination R^2 = 1 - SSE / SST per target dimension
(SST about the test split's own mean, as in scikit-learn's `r2_score`), averaged over the
dimensions whose variance is non-zero in both splits. An encoder that is robust to exogenous
distractors should have high endo R^2 and low exo R^2.

Two probes: ridge regression (default; inputs and targets standardised on the train split,
closed form by a Cholesky solve, or through an SVD for l2 = 0, the minimum-norm least-squares
solution) and a small
MLP trained full-batch with Adam for a fixed number of steps. Both are pure and jittable (static
sizes only), so the training loop can run them at evaluation points inside its scan. Reference
points reported beside every probe (`probe_with_references`): the oracle embedding (the endo
state itself: the ceiling for endo, and the floor of exo that state correlations allow) and a
randomly initialised encoder of the same architecture (what the architecture keeps before any
learning).

States in a replay buffer or rollout are correlated in time, so a random split measures how
well the probe interpolates between visited states, not generalisation to new episodes; use
states from separate episodes for `test` when that distinction matters (call `ridge_probe`
directly).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PROBE_KINDS = ("ridge", "mlp")


def _standardiser(train: jax.Array):
    """Train-split mean and scale per column; constant columns get scale 1 (they standardise to 0)."""
    mean = jnp.mean(train, axis=0)
    std = jnp.std(train, axis=0)
    constant = std <= 1e-6 * (1.0 + jnp.abs(mean))
    return mean, jnp.where(constant, 1.0, std), constant


def r2_scores(pred: jax.Array, target: jax.Array, train_constant: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Held-out R^2 per target column (NaN where the column is constant) and their mean over the rest."""
    sse = jnp.sum((target - pred) ** 2, axis=0)
    centred = target - jnp.mean(target, axis=0)
    sst = jnp.sum(centred**2, axis=0)
    scale = jnp.sum(target**2, axis=0) + 1.0
    constant = sst <= 1e-10 * scale
    if train_constant is not None:
        constant = jnp.logical_or(constant, train_constant)
    per_dim = jnp.where(constant, jnp.nan, 1.0 - sse / jnp.where(constant, 1.0, sst))
    usable = jnp.logical_not(constant)
    mean = jnp.sum(jnp.where(usable, per_dim, 0.0)) / jnp.sum(usable)  # NaN when no column varies
    return mean, per_dim


def _as_matrix(name: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (num_samples, dims) or (num_samples,), got shape {x.shape}")
    return x.astype(jnp.float32)


def _check_split(train_z, train_y, test_z, test_y):
    if train_z.shape[0] != train_y.shape[0] or test_z.shape[0] != test_y.shape[0]:
        raise ValueError(
            f"sample counts differ: train_z {train_z.shape}, train_y {train_y.shape}, test_z {test_z.shape}, test_y {test_y.shape}"
        )
    if train_z.shape[1] != test_z.shape[1] or train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"feature dims differ between splits: z {train_z.shape[1]} vs {test_z.shape[1]}, y {train_y.shape[1]} vs {test_y.shape[1]}")
    if train_z.shape[0] < 2 or test_z.shape[0] < 2:
        raise ValueError(f"need >= 2 samples in each split, got train {train_z.shape[0]}, test {test_z.shape[0]}")


def cholesky_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """X with A X = B for a symmetric positive definite (d, d) A, by a column-wise Cholesky in matmuls (no LAPACK)."""
    d = a.shape[0]
    index = jnp.arange(d)

    def factor_column(j, lower):
        # L[j:, j] = (A[j:, j] - L[j:, :j] L[j, :j]) / L[j, j], with rows < j masked off
        column = a[:, j] - lower @ lower[j]
        pivot = jnp.sqrt(jnp.maximum(column[j], jnp.finfo(a.dtype).tiny))
        return lower.at[:, j].set(jnp.where(index >= j, column / pivot, 0.0))

    lower = jax.lax.fori_loop(0, d, factor_column, jnp.zeros_like(a))

    def forward(i, y):  # L y = b, row by row
        return y.at[i].set((b[i] - lower[i] @ y) / lower[i, i])

    def backward(k, x):  # L^T x = y, from the last row up
        i = d - 1 - k
        return x.at[i].set((y[i] - lower[:, i] @ x) / lower[i, i])

    y = jax.lax.fori_loop(0, d, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, d, backward, jnp.zeros_like(b))


def ridge_probe(train_z, train_y, test_z, test_y, l2: float = 1e-3) -> dict[str, jax.Array]:
    """Ridge regression z -> y fit on train, scored on test: {"r2": mean R^2, "r2_per_dim": (dims,)}.

    Minimises (1/n) ||Y_s - Z_s W||^2 + l2 ||W||^2 on standardised Z_s, Y_s (train statistics),
    i.e. W = (Z_s^T Z_s + n l2 I)^-1 Z_s^T Y_s by `cholesky_solve` when l2 > 0; for l2 = 0,
    W = V diag(1 / s) U^T Y_s from the thin SVD Z_s = U diag(s) V^T with singular values below
    numpy's lstsq cut-off (max(n, d) * eps * s_max) dropped: the minimum-norm least-squares fit.
    """
    train_z, train_y = _as_matrix("train_z", train_z), _as_matrix("train_y", train_y)
    test_z, test_y = _as_matrix("test_z", test_z), _as_matrix("test_y", test_y)
    _check_split(train_z, train_y, test_z, test_y)
    z_mean, z_std, _ = _standardiser(train_z)
    y_mean, y_std, y_constant = _standardiser(train_y)
    zs = (train_z - z_mean) / z_std
    ys = (train_y - y_mean) / y_std
    n, d = zs.shape
    if l2 > 0:
        # (Z^T Z + n l2 I) W = Z^T Y is positive definite: a Cholesky solve of matmuls only, because
        # jaxlib's CPU SVD/QR kernels split vmapped (batched) calls over XLA's thread pool and can
        # deadlock on a 2-core machine when two run at once (see networks.orthonormal_columns)
        weights = cholesky_solve(zs.T @ zs + n * l2 * jnp.eye(d, dtype=zs.dtype), zs.T @ ys)
    else:
        u, s, vt = jnp.linalg.svd(zs, full_matrices=False)
        cutoff = max(n, d) * jnp.finfo(jnp.float32).eps * jnp.max(s)
        kept = s > cutoff
        shrink = jnp.where(kept, s / jnp.where(kept, s**2 + n * l2, 1.0), 0.0)
        weights = vt.T @ (shrink[:, None] * (u.T @ ys))
    pred = ((test_z - z_mean) / z_std) @ weights * y_std + y_mean
    r2, per_dim = r2_scores(pred, test_y, y_constant)
    return {"r2": r2, "r2_per_dim": per_dim}


class ProbeMLP(nn.Module):
    """A small ReLU MLP regressor for the nonlinear probe."""

    hidden: Sequence[int] = (64, 64)
    out_dim: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Predict standardised targets from standardised embeddings."""
        for width in self.hidden:
            z = nn.relu(nn.Dense(width)(z))
        return nn.Dense(self.out_dim)(z)


def mlp_probe(
    train_z,
    train_y,
    test_z,
    test_y,
    key: jax.Array,
    hidden: Sequence[int] = (64, 64),
    steps: int = 500,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
) -> dict[str, jax.Array]:
    """An MLP z -> y trained full-batch with AdamW for `steps` steps, scored on test like `ridge_probe`."""
    train_z, train_y = _as_matrix("train_z", train_z), _as_matrix("train_y", train_y)
    test_z, test_y = _as_matrix("test_z", test_z), _as_matrix("test_y", test_y)
    _check_split(train_z, train_y, test_z, test_y)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    hidden = tuple(hidden)
    if not all(isinstance(w, int) and w > 0 for w in hidden):
        raise ValueError(f"hidden={hidden!r} must be positive integer widths")
    z_mean, z_std, _ = _standardiser(train_z)
    y_mean, y_std, y_constant = _standardiser(train_y)
    zs = (train_z - z_mean) / z_std
    ys = (train_y - y_mean) / y_std
    model = ProbeMLP(hidden=hidden, out_dim=train_y.shape[1])
    params = model.init(key, zs[:1])
    optimiser = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss_fn(p):
        return jnp.mean((model.apply(p, zs) - ys) ** 2)

    def step(carry, _):
        p, opt_state = carry
        grads = jax.grad(loss_fn)(p)
        updates, opt_state = optimiser.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
    pred = model.apply(params, (test_z - z_mean) / z_std) * y_std + y_mean
    r2, per_dim = r2_scores(pred, test_y, y_constant)
    return {"r2": r2, "r2_per_dim": per_dim}


def _split_sizes(num_samples: int, holdout: float) -> int:
    if not isinstance(holdout, float | int) or isinstance(holdout, bool) or not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout={holdout!r} must be a fraction in (0, 1)")
    num_test = int(round(num_samples * holdout))
    if num_test < 2 or num_samples - num_test < 2:
        raise ValueError(f"{num_samples} samples with holdout={holdout} leave {num_test} test / {num_samples - num_test} train; need >= 2 each")
    return num_test


def probe_embeddings(
    z,
    endo,
    exo,
    key: jax.Array,
    holdout: float = 0.25,
    kind: str = "ridge",
    l2: float = 1e-3,
    mlp_kwargs: dict[str, Any] | None = None,
) -> dict[str, jax.Array]:
    """Held-out R^2 of embeddings z for the endo and the exo vectors, from one random split.

    Returns {"endo_r2", "exo_r2", "endo_r2_per_dim", "exo_r2_per_dim"}; z is (N, ...) and is
    flattened per sample. The same split is used for both targets.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"kind={kind!r} is not a probe; valid: {list(PROBE_KINDS)}")
    z = jnp.asarray(z)
    z = z.reshape(z.shape[0], -1)
    endo, exo = _as_matrix("endo", endo), _as_matrix("exo", exo)
    if not (z.shape[0] == endo.shape[0] == exo.shape[0]):
        raise ValueError(f"z, endo and exo need the same number of samples, got {z.shape[0]}, {endo.shape[0]}, {exo.shape[0]}")
    num_test = _split_sizes(z.shape[0], holdout)
    key_split, key_endo, key_exo = jax.random.split(key, 3)
    order = jax.random.permutation(key_split, z.shape[0])
    test, train = order[:num_test], order[num_test:]

    def fit(y, fit_key):
        if kind == "ridge":
            return ridge_probe(z[train], y[train], z[test], y[test], l2)
        return mlp_probe(z[train], y[train], z[test], y[test], fit_key, **(mlp_kwargs or {}))

    endo_fit, exo_fit = fit(endo, key_endo), fit(exo, key_exo)
    return {
        "endo_r2": endo_fit["r2"],
        "exo_r2": exo_fit["r2"],
        "endo_r2_per_dim": endo_fit["r2_per_dim"],
        "exo_r2_per_dim": exo_fit["r2_per_dim"],
    }


def encode(encode_fn: Callable[[Any, jax.Array], jax.Array], params: Any, obs: jax.Array, batch_size: int | None = None) -> jax.Array:
    """Embeddings (N, features) of observations, optionally in chunks of `batch_size` to bound memory."""
    if batch_size is None:
        z = encode_fn(params, obs)
    else:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer or None")
        z = jax.lax.map(lambda o: encode_fn(params, o[None])[0], obs, batch_size=batch_size)
    return z.reshape(z.shape[0], -1)


def probe_encoder(
    encode_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    obs: jax.Array,
    endo,
    exo,
    key: jax.Array,
    encode_batch_size: int | None = None,
    **probe_kwargs: Any,
) -> dict[str, jax.Array]:
    """Probe an encoder: `encode_fn(params, obs) -> (N, ...)` embeddings, then `probe_embeddings`."""
    z = encode(encode_fn, params, obs, encode_batch_size)
    return probe_embeddings(z, endo, exo, key, **probe_kwargs)


def probe_with_references(
    encode_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    init_fn: Callable[[jax.Array], Any],
    obs: jax.Array,
    endo,
    exo,
    key: jax.Array,
    encode_batch_size: int | None = None,
    **probe_kwargs: Any,
) -> dict[str, dict[str, jax.Array]]:
    """The learned encoder's probe beside the oracle (endo as embedding) and a fresh random encoder.

    `init_fn(key) -> params` initialises the same architecture. All three rows use the same
    train/test split, so their differences are not split noise.
    """
    key_probe, key_random = jax.random.split(key)
    random_params = init_fn(key_random)
    return {
        "learned": probe_encoder(encode_fn, params, obs, endo, exo, key_probe, encode_batch_size, **probe_kwargs),
        "oracle": probe_embeddings(endo, endo, exo, key_probe, **probe_kwargs),
        "random": probe_encoder(encode_fn, random_params, obs, endo, exo, key_probe, encode_batch_size, **probe_kwargs),
    }


def as_metrics(rows: dict[str, dict[str, jax.Array]], prefix: str = "probe") -> dict[str, jax.Array]:
    """Flat scalar metrics for metrics.csv, e.g. {"probe/learned/endo_r2": ...} (per-dim values dropped)."""
    return {f"{prefix}/{row}/{name}": value for row, result in rows.items() for name, value in result.items() if value.ndim == 0}

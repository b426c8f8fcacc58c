"""Sine and cosine from elementwise arithmetic, so XLA vectorises them on every backend.

XLA's CPU compiler lowers `jnp.sin` / `jnp.cos` to scalar calls: on the 2-core CPU we develop on
a sin and a cos cost 4.8 ns per float32 element together, against 0.2-0.4 ns for `jnp.exp`, and
they were most of an env step (cartpole's RK4 takes four sin/cos pairs per step) and of a
`background` frame (a sine per wave per pixel). `sincos` below costs 0.3-0.8 ns for both
(`bench/trig_throughput.py`: 15x). Every env in the suite uses these, so dynamics and frames are
computed the same way on CPU and GPU.

Method: Cody-Waite range reduction by pi/2 with pi/2 split into three float32 pieces (the first
two exact in few bits, so j * piece is exact for |j| < 2^15), then the classical minimax
polynomials of sin and cos on [-pi/4, pi/4] (Cephes' single-precision coefficients), the
quadrant picking which of them and which sign. Absolute error <= 1e-7 for |x| <= 1e4 (tested),
about twice the error of XLA's correctly rounded-ish result; beyond ~1e5 the reduction loses
accuracy (no env angle gets near that: angles are reset every episode).
"""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

TWO_OVER_PI = np.float32(2.0 / np.pi)
# pi/2 = PIO2_HI + PIO2_MID + PIO2_LO, the first two with few significant bits
PIO2_HI = np.float32(1.5703125)
PIO2_MID = np.float32(4.837512969970703125e-4)
PIO2_LO = np.float32(7.54978995489188216e-8)
SIN_COEFFS = (np.float32(-1.9515295891e-4), np.float32(8.3321608736e-3), np.float32(-1.6666654611e-1))
COS_COEFFS = (np.float32(2.443315711809948e-5), np.float32(-1.388731625493765e-3), np.float32(4.166664568298827e-2))


def sincos(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sin x, cos x) of a float array, elementwise, sharing one range reduction."""
    x = jnp.asarray(x, jnp.float32)
    quadrant = jnp.round(x * TWO_OVER_PI)
    r = ((x - quadrant * PIO2_HI) - quadrant * PIO2_MID) - quadrant * PIO2_LO  # in [-pi/4, pi/4]
    z = r * r
    s3, s2, s1 = SIN_COEFFS
    c3, c2, c1 = COS_COEFFS
    sin_r = ((s3 * z + s2) * z + s1) * z * r + r
    cos_r = ((c3 * z + c2) * z + c1) * z * z - 0.5 * z + 1.0
    q = quadrant.astype(jnp.int32) & 3  # x = r + q pi/2 (mod 2 pi)
    sin_x = jnp.where(q == 0, sin_r, jnp.where(q == 1, cos_r, jnp.where(q == 2, -sin_r, -cos_r)))
    cos_x = jnp.where(q == 0, cos_r, jnp.where(q == 1, -sin_r, jnp.where(q == 2, -cos_r, sin_r)))
    return sin_x, cos_x


def sin(x: jax.Array) -> jax.Array:
    """sin x, elementwise (see sincos)."""
    return sincos(x)[0]


def cos(x: jax.Array) -> jax.Array:
    """cos x, elementwise (see sincos)."""
    return sincos(x)[1]

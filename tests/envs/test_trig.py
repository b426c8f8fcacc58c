"""`envs.trig`: the vectorisable sine and cosine the envs use instead of XLA's scalar ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_suite.envs import trig


@pytest.mark.parametrize("limit", [1.0, 10.0, 1e3, 1e4])
def test_sincos_is_within_1e7_of_the_true_values(limit):
    x = jax.random.uniform(jax.random.key(int(limit)), (200_000,), minval=-limit, maxval=limit)
    s, c = jax.jit(trig.sincos)(x)
    exact = np.asarray(x, np.float64)
    assert np.abs(np.asarray(s, np.float64) - np.sin(exact)).max() < 1e-7
    assert np.abs(np.asarray(c, np.float64) - np.cos(exact)).max() < 1e-7
    assert s.dtype == c.dtype == jnp.float32


def test_sincos_at_the_quadrant_edges_and_special_points():
    points = np.array([0.0, -0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi, -np.pi / 2, 2 * np.pi, 1e-30], np.float32)
    s, c = trig.sincos(jnp.asarray(points))
    np.testing.assert_allclose(np.asarray(s), np.sin(points.astype(np.float64)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(c), np.cos(points.astype(np.float64)), atol=1e-7)
    assert float(trig.sin(0.0)) == 0.0 and float(trig.cos(0.0)) == 1.0  # exact at the rest state
    np.testing.assert_array_equal(np.asarray(trig.sin(jnp.asarray(points))), np.asarray(s))
    np.testing.assert_array_equal(np.asarray(trig.cos(jnp.asarray(points))), np.asarray(c))


def test_sincos_is_odd_even_and_differentiable():
    x = jnp.linspace(-50.0, 50.0, 10_001)
    s, c = trig.sincos(x)
    s_neg, c_neg = trig.sincos(-x)
    np.testing.assert_array_equal(np.asarray(s_neg), -np.asarray(s))  # rounding half to even is symmetric, so the reduction is odd
    np.testing.assert_array_equal(np.asarray(c_neg), np.asarray(c))
    grad = jax.vmap(jax.grad(trig.sin))(x)
    np.testing.assert_allclose(np.asarray(grad), np.cos(np.asarray(x, np.float64)), atol=2e-6)

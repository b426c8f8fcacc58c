"""Pure-JAX rasteriser: signed-distance shapes on a pixel grid, alpha-composited into uint8 frames.

Everything here is a pure function of arrays, so rendering jits, vmaps over envs and runs on any
backend with no OpenGL and no files. A frame is built as a stack of layers, each an
``(rgb, alpha)`` pair over the grid; a shape's alpha is its anti-aliased coverage of each pixel,
computed from its signed distance (negative inside) and the world size of one pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_suite.envs import trig


class View(NamedTuple):
    """A square window onto the world plane: centre (cx, cy) and half-width, in world units."""

    cx: float
    cy: float
    half: float


class Layer(NamedTuple):
    """One paint layer: colours (H, W, 3) in [0, 1] and coverage (H, W) in [0, 1]."""

    rgb: jax.Array
    alpha: jax.Array


def materialize(tree):
    """The same pytree of (small, per-env) values, computed once before the per-pixel loops read them.

    XLA fuses cheap elementwise producers into the consumers that broadcast them, so without this a
    distractor's update (its random draw with erfinv's polynomial, a random walk, a clip) is
    recomputed inside the frame's fused loop for every pixel and channel: 30x slower frames with
    the `color` distractor on CPU. `jax.lax.optimization_barrier` does not prevent it there (XLA's
    CPU compiler expands barriers before fusion); a product with the identity matrix does, since
    XLA never fuses a dot into an elementwise loop. Exact for finite values (x * 1 + 0).
    """
    leaves, treedef = jax.tree.flatten(tree)
    floats = [i for i, x in enumerate(leaves) if jnp.issubdtype(jnp.result_type(x), jnp.float32) and jnp.size(x) > 0]
    if not floats:
        return tree
    flat = jnp.concatenate([jnp.ravel(leaves[i]).astype(jnp.float32) for i in floats])
    flat = jnp.eye(flat.size, dtype=jnp.float32) @ flat
    offset = 0
    for i in floats:  # integer leaves (grid cells, discrete actions) pass through untouched
        n = int(jnp.size(leaves[i]))
        leaves[i] = flat[offset:offset + n].reshape(jnp.shape(leaves[i])).astype(jnp.result_type(leaves[i]))
        offset += n
    return jax.tree.unflatten(treedef, leaves)


def pixel_grid(size: int, view: View) -> jax.Array:
    """World coordinates (H, W, 2) of pixel centres, x to the right and y up (row 0 is the top)."""
    ticks = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2.0 - 1.0
    xs = view.cx + view.half * ticks
    ys = view.cy - view.half * ticks
    gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
    return jnp.stack([gx, gy], axis=-1)


def pixel_size(size: int, view: View) -> float:
    """World width of one pixel, used to anti-alias edges over about one pixel."""
    return 2.0 * view.half / size


# The SDF helpers work on x and y components separately rather than reducing over a trailing
# axis of size 2: reductions end XLA's elementwise fusions, so the component form lets a whole
# frame (every shape, coverage and blend) compile to one fused loop instead of many full-frame
# intermediates (measured in bench/env_throughput.py).


def _components(p: jax.Array, center: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x, y) of p - center, broadcasting center's leading axes against p's."""
    center = jnp.asarray(center)
    return p[..., 0] - center[..., 0], p[..., 1] - center[..., 1]


def sq_distance(p: jax.Array, center: jax.Array) -> jax.Array:
    """Squared distance from points p (..., 2) to center."""
    dx, dy = _components(p, center)
    return dx * dx + dy * dy


def sd_circle(p: jax.Array, center: jax.Array, radius: jax.Array) -> jax.Array:
    """Signed distance from points p (..., 2) to a disc."""
    return jnp.sqrt(sq_distance(p, center)) - radius


def sd_box(p: jax.Array, center: jax.Array, half_size: jax.Array, angle: jax.Array = 0.0) -> jax.Array:
    """Signed distance from points p (..., 2) to a rectangle rotated by angle (radians, ccw)."""
    c, s = trig.cos(angle), trig.sin(angle)
    dx, dy = _components(p, center)
    half_size = jnp.asarray(half_size)
    qx = jnp.abs(c * dx + s * dy) - half_size[..., 0]
    qy = jnp.abs(-s * dx + c * dy) - half_size[..., 1]
    ox, oy = jnp.maximum(qx, 0.0), jnp.maximum(qy, 0.0)
    return jnp.sqrt(ox * ox + oy * oy) + jnp.minimum(jnp.maximum(qx, qy), 0.0)


def sd_capsule(p: jax.Array, a: jax.Array, b: jax.Array, radius: jax.Array) -> jax.Array:
    """Signed distance from points p (..., 2) to a segment a-b thickened by radius."""
    pax, pay = _components(p, a)
    a, b = jnp.asarray(a), jnp.asarray(b)
    bax, bay = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    h = jnp.clip((pax * bax + pay * bay) / jnp.maximum(bax * bax + bay * bay, 1e-12), 0.0, 1.0)
    ex, ey = pax - h * bax, pay - h * bay
    return jnp.sqrt(ex * ex + ey * ey) - radius


def sd_ring(p: jax.Array, center: jax.Array, radius: jax.Array, width: jax.Array) -> jax.Array:
    """Signed distance from points p (..., 2) to a circular outline of the given line width."""
    dx, dy = _components(p, center)
    return jnp.abs(jnp.sqrt(dx * dx + dy * dy) - radius) - width


def coverage(sd: jax.Array, px: float) -> jax.Array:
    """Anti-aliased coverage in [0, 1] of a pixel whose centre has signed distance sd."""
    return jnp.clip(0.5 - sd / px, 0.0, 1.0)


def solid(sd: jax.Array, color: jax.Array, px: float, opacity: jax.Array = 1.0) -> Layer:
    """A flat-coloured layer covering where sd < 0."""
    alpha = coverage(sd, px) * opacity
    rgb = jnp.broadcast_to(jnp.asarray(color, jnp.float32), alpha.shape + (3,))
    return Layer(rgb, alpha)


def over(dst: jax.Array, layer: Layer) -> jax.Array:
    """Composite a layer over an opaque image (H, W, 3) with the 'over' operator."""
    a = layer.alpha[..., None]
    return layer.rgb * a + dst * (1.0 - a)


def merge(layers: list[Layer]) -> Layer:
    """Flatten layers (first is bottom) into one premultiplied-equivalent layer."""
    if len(layers) == 1:
        # nothing to flatten: un-premultiplying a single layer would only add a per-pixel divide,
        # which XLA will not fuse into each colour channel (26% of the shapes frame rate)
        return layers[0]
    rgb = jnp.zeros_like(layers[0].rgb)
    alpha = jnp.zeros_like(layers[0].alpha)
    for layer in layers:
        a = layer.alpha[..., None]
        rgb = layer.rgb * a + rgb * (1.0 - a)
        alpha = layer.alpha + alpha * (1.0 - layer.alpha)
    # un-premultiply so that over(dst, merged) equals compositing the layers one by one
    return Layer(rgb / jnp.maximum(alpha[..., None], 1e-6), alpha)


def paint(base: jax.Array, layers: list[Layer]) -> jax.Array:
    """Composite layers, bottom first, over an opaque base image."""
    for layer in layers:
        base = over(base, layer)
    return base


def to_uint8(image: jax.Array) -> jax.Array:
    """Quantise an image in [0, 1] to uint8."""
    return jnp.clip(jnp.round(image * 255.0), 0, 255).astype(jnp.uint8)

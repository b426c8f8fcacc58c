"""Sine/cosine throughput, run by hand: `python bench/trig_throughput.py`.

Prints ns per float32 element of XLA's `jnp.sin` and `jnp.cos` (the peer) and of the suite's
`envs.trig.sincos` (both at once) on the default device, and the ratio. On the 2-core CPU XLA
lowers sin/cos to scalar calls, which is why the envs use `trig` (see its module docstring).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jaxrl_suite.envs import trig


def ns_per_element(fn, x: jax.Array, repeats: int) -> float:
    """Best-of-`repeats` wall time of a jitted elementwise function, in ns per element."""
    compiled = jax.jit(fn)
    compiled(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        compiled(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best / x.size * 1e9


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1 << 20, help="elements per call")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.size < 1 or args.repeats < 1:
        raise ValueError(f"--size={args.size} and --repeats={args.repeats} must be >= 1")
    x = jax.random.uniform(jax.random.key(0), (args.size,), minval=-20.0, maxval=20.0)
    rows = {
        "jnp.sin + jnp.cos (XLA)": ns_per_element(lambda v: jnp.sin(v) + jnp.cos(v), x, args.repeats),
        "trig.sincos (ours)": ns_per_element(lambda v: sum(trig.sincos(v)), x, args.repeats),
        "jnp.exp (for scale)": ns_per_element(jnp.exp, x, args.repeats),
    }
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.size} float32 elements, best of {args.repeats}")
    for label, ns in rows.items():
        print(f"{label:26s} {ns:6.2f} ns/element")
    print(f"sincos speed-up over XLA's sin + cos: {rows['jnp.sin + jnp.cos (XLA)'] / rows['trig.sincos (ours)']:.1f}x")


if __name__ == "__main__":
    main()

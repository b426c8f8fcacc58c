"""Environment throughput against gymnax, run by hand: `python bench/env_throughput.py [--quick]`.

One run prints one table:
- state steps/s of our cartpole-balance (no distractor) and of gymnax's CartPole-v1, same
  protocol, with the ratio (target >= 1.0x);
- our cartpole-balance with each registered state distractor at `hard` (looked up from the
  registry at run time), ratio to gymnax (target >= 0.5x);
- pixel frames/s at 64 x 64 of cartpole-balance with each registered pixel distractor at `hard`
  (target >= 50k frames/s with the hard shapes distractor);
- what auto-reset costs for pixels: the step draws a second frame (the new episode's first, besides
  `info["final_observation"]`) only when an episode ends, so the shapes row is measured again with
  an episode ending on every step (`max_steps_in_episode=1`), the worst case.

Protocol: `num_envs` envs vmapped, uniformly random actions from each env's action space, a jitted
`jax.lax.scan` of `steps` steps; compile and one warm-up run excluded; every program is compiled
first, then all are timed in turns, `--repeats` rounds, and each row reports its best round (on a
shared machine the absolute figures are noisy; the turns keep the ratios between rows fair). The scan folds every observation (and final observation) into a checksum, so XLA cannot
drop the rendering as dead code, for us and for gymnax alike.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnax
import jax
import jax.numpy as jnp

from jaxrl_suite.envs import list_distractors, make

TARGET_CLEAN = 1.0
TARGET_STATE_DISTRACTOR = 0.5
TARGET_PIXEL_FPS = 50_000


def compile_rollout(env: Any, params: Any, num_envs: int, steps: int, seed: int = 0):
    """A compiled, warmed-up program running `num_envs` vmapped envs for `steps` random-action steps."""

    def run(key):
        key_reset, key_roll = jax.random.split(key)
        _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)

        def body(carry, step_key):
            states, checksum = carry
            key_act, key_env = jax.random.split(step_key)
            actions = jax.vmap(env.action_space(params).sample)(jax.random.split(key_act, num_envs))
            obs, states, reward, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(key_env, num_envs), states, actions, params
            )
            checksum = checksum + jnp.sum(obs, dtype=jnp.float32) + jnp.sum(info["final_observation"], dtype=jnp.float32)
            return (states, checksum + jnp.sum(reward)), None

        (_, checksum), _ = jax.lax.scan(body, (states, jnp.zeros((), jnp.float32)), jax.random.split(key_roll, steps))
        return checksum

    fn = jax.jit(run).lower(jax.random.key(seed)).compile()
    jax.block_until_ready(fn(jax.random.key(seed)))  # warm-up
    return fn


def time_round_robin(programs: dict[str, tuple[Any, int]], repeats: int) -> dict[str, float]:
    """Best steps/s of each program, timing them in turn `repeats` times.

    Taking turns spreads the load of a shared machine over every row alike, so the ratios between
    rows stay meaningful even when the absolute figures are noisy.
    """
    best = {label: float("inf") for label in programs}
    for r in range(repeats):
        for label, (fn, work) in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(jax.random.key(1 + r)))
            best[label] = min(best[label], time.perf_counter() - start)
    return {label: programs[label][1] / best[label] for label in programs}


def build_or_skip(distractor: str, **kwargs: Any):
    """`make` cartpole-balance with a distractor at `hard`, or None (with a note) when its defaults need options.

    Composite distractors (e.g. `combined`, which needs `parts=...`) have no default config; they
    are mixtures of the single ones measured here.
    """
    try:
        return make("cartpole-balance", distractor=distractor, difficulty="hard", **kwargs)
    except ValueError as err:
        print(f"  skipped {distractor!r} ({kwargs.get('obs')}): {err}", flush=True)
        return None


def verdict(value: float, target: float) -> str:
    """'ok' or 'below' against a target."""
    return "ok" if value >= target else "below"


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=1024, help="vmapped envs for state throughput")
    parser.add_argument("--steps", type=int, default=1000, help="scan length for state throughput")
    parser.add_argument("--pixel-envs", type=int, default=64, help="vmapped envs for pixel throughput")
    parser.add_argument("--pixel-steps", type=int, default=25, help="scan length for pixel throughput")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (best is reported)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in well under a minute")
    args = parser.parse_args()
    if args.quick:
        args.num_envs, args.steps, args.pixel_envs, args.pixel_steps, args.repeats = 256, 200, 32, 10, 2
    for name in ("num_envs", "steps", "pixel_envs", "pixel_steps", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s))")
    print(f"state: {args.num_envs} envs x {args.steps} steps; pixels: {args.pixel_envs} envs x {args.pixel_steps} steps "
          f"at {args.image_size}x{args.image_size}; best of {args.repeats}")
    state_work, pixel_work = args.num_envs * args.steps, args.pixel_envs * args.pixel_steps

    def state_program(env, params):
        return compile_rollout(env, params, args.num_envs, args.steps), state_work

    def pixel_program(env, params):
        return compile_rollout(env, params, args.pixel_envs, args.pixel_steps), pixel_work

    print("compiling ...", flush=True)
    state_programs = {"gymnax CartPole-v1 (state)": state_program(*gymnax.make("CartPole-v1"))}
    state_programs["cartpole-balance (state, none)"] = state_program(*make("cartpole-balance", obs="state"))
    for dist in list_distractors("state"):
        built = None if dist == "none" else build_or_skip(dist, obs="state")
        if built is not None:
            state_programs[f"cartpole-balance (state, {dist} hard)"] = state_program(*built)
    pixel_programs = {}
    for dist in list_distractors("pixels"):
        built = build_or_skip(dist, obs="pixels", image_size=args.image_size)
        if built is not None:
            pixel_programs[f"cartpole-balance (pixels, {dist} hard)"] = pixel_program(*built)
    # auto-reset draws the new episode's first frame only on steps where an episode ends (in a
    # vmapped batch, where any member's does): this row pays it on every step, the worst case
    probe = "shapes" if "cartpole-balance (pixels, shapes hard)" in pixel_programs else "none"
    env, params = make("cartpole-balance", obs="pixels", distractor=probe, difficulty="hard", image_size=args.image_size)
    every_label = f"cartpole-balance (pixels, {probe} hard, an episode ends every step)"
    pixel_programs[every_label] = pixel_program(env, params.replace(max_steps_in_episode=1))

    print("timing ...", flush=True)
    state_sps = time_round_robin(state_programs, args.repeats)
    pixel_fps = time_round_robin(pixel_programs, args.repeats)

    gym_sps = state_sps["gymnax CartPole-v1 (state)"]
    rows: list[tuple[str, str, str, str]] = []
    for label, sps in state_sps.items():
        ratio, target = sps / gym_sps, ""
        if label.startswith("cartpole-balance"):
            goal = TARGET_CLEAN if label.endswith("none)") else TARGET_STATE_DISTRACTOR
            target = f">= {goal}x: {verdict(ratio, goal)}"
        rows.append((label, f"{sps:,.0f} steps/s", f"{ratio:.2f}x gymnax" if target else "", target))
    usual = pixel_fps[f"cartpole-balance (pixels, {probe} hard)"]
    for label, fps in pixel_fps.items():
        target = f">= {TARGET_PIXEL_FPS:,}: {verdict(fps, TARGET_PIXEL_FPS)}" if "shapes hard)" in label else ""
        note = f"{fps / usual:.2f}x the row without resets" if label == every_label else ""
        rows.append((label, f"{fps:,.0f} frames/s", note, target))

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'env':<{width}}  {'throughput':>22}  {'ratio':<34}  target")
    print("-" * (width + 80))
    for label, value, ratio, target in rows:
        print(f"{label:<{width}}  {value:>22}  {ratio:<34}  {target}")


if __name__ == "__main__":
    main()

"""World-model agent throughput, run by hand: `python bench/world_model_throughput.py [--agent dreamer] [--preset cartpole-cpu-small]`.

For 1, 4 and 16 vmapped seeds (`--seeds`), one table row each: agent-env steps per second
(summed over seeds) and model updates per second (gradient steps of world model + actor-critic,
summed over seeds), and the wall time of one chunk. One update collects num_envs x
collect_steps env steps and runs train_steps gradient steps, so the two rates are tied by the
preset's ratio; both are printed because they are what other world-model codebases report.

Protocol: the preset (default cartpole-cpu-small, from state: the CPU preset of the slow test and
of experiments/world-models.toml) with its prefill set to 0 so every timed update learns; one
chunk of `--updates` updates (evaluation excluded: eval_every equals the chunk); compile and one
warm-up chunk excluded; best of `--repeats` timed chunks. On a shared CPU the absolute figures
are noisy; run it on an idle machine for figures you quote.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from jaxrl_suite import agents
from jaxrl_suite import config as cfg_lib
from jaxrl_suite import training


def measure(agent: str, preset: str, num_seeds: int, updates: int, repeats: int) -> dict[str, float]:
    """Env steps/s and model updates/s (summed over seeds) of `num_seeds` vmapped members."""
    entry = agents.get(agent)
    if preset not in entry.presets:
        raise ValueError(f"unknown preset {preset!r} for {agent}; valid: {sorted(entry.presets)}")
    config = dataclasses.replace(entry.presets[preset], prefill=0, num_updates=updates, eval_every=updates, evals_per_chunk=1, eval_episodes=1)
    static, batch = cfg_lib.make_batch(config, num_seeds)
    bt = training.batched(entry.make_train(static))
    # evaluation is outside the timed region: time `update` minus one evaluation measured alone
    state = bt.init(batch.keys, batch.hyper)
    state, metrics = bt.update(state)
    jax.block_until_ready(metrics)
    jax.block_until_ready(bt.evaluate(state))
    best_update, best_eval = float("inf"), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = bt.update(state)
        jax.block_until_ready(metrics)
        best_update = min(best_update, time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(bt.evaluate(state))
        best_eval = min(best_eval, time.perf_counter() - start)
    seconds = max(best_update - best_eval, 1e-9)
    env_steps = num_seeds * updates * static.num_envs * static.collect_steps
    model_updates = num_seeds * updates * static.train_steps
    return {"seconds": seconds, "env_steps_per_s": env_steps / seconds, "updates_per_s": model_updates / seconds}


def main() -> None:
    """Print one row per seed count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="dreamer", choices=["dreamer", "dreamer-robust"])
    parser.add_argument("--preset", default="cartpole-cpu-small")
    parser.add_argument("--seeds", default="1,4,16")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.agent} / {args.preset} on {jax.devices()[0].platform}: {args.updates} updates per timed chunk")
    print(f"{'seeds':>5} {'chunk s':>8} {'env steps/s':>12} {'updates/s':>10}")
    for num_seeds in (int(s) for s in args.seeds.split(",")):
        row = measure(args.agent, args.preset, num_seeds, args.updates, args.repeats)
        print(f"{num_seeds:>5} {row['seconds']:>8.2f} {row['env_steps_per_s']:>12.0f} {row['updates_per_s']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()

"""Agent throughput, run by hand (not a test): `python bench/agent_throughput.py [--quick] [--skip-brax]`.

Prints, in one run on the same machine:
1. env steps/s of our PPO training on gymnax CartPole-v1 (16 envs x 128 steps per update), and
   wall time for 1, 4 and 16 vmapped seeds (the anchor: a pure-JAX PPO library does 79 k steps/s
   for one seed on a 2-core CPU; 8 vmapped seeds take 8.9x one seed there);
2. brax's own PPO trainer against our PPO on the same brax env through our `BraxToGymnax`
   adapter, with the same batch shape and network widths, each timed after its compile (brax:
   its own `training/sps` of its last epoch; ours: a second call of a jitted scan of
   updates). brax 0.14.2's trainers call `jax.device_put_replicated`, which jax 0.10 removed:
   this script (only) shims it by stacking one copy per device;
3. what the host loop's tqdm progress bar costs (target < 5%): the same chunks timed with and
   without a bar advanced between them;
4. compile time of each registered agent's chunked update at its CPU preset (offline agents: on a
   400-transition dataset) (target < 60 s).
Steps/s count agent-env interactions after compilation (compile time is reported apart).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxrl_suite import agents
from jaxrl_suite.config import make_batch
from jaxrl_suite.ppo import PPOConfig
from jaxrl_suite.training import batched


def timed_chunks(trainer, state, chunks: int, bar: bool = False) -> tuple[float, object]:
    """Seconds for `chunks` calls of the batched update (already compiled), optionally with a bar."""
    progress = tqdm.tqdm(total=chunks, leave=False) if bar else None
    start = time.perf_counter()
    for _ in range(chunks):
        state, metrics = trainer.update(state)
        ret = float(np.mean(np.asarray(metrics["return_mean"])))  # the host loop reads this anyway
        if progress is not None:
            progress.set_postfix(ret=f"{ret:.1f}")
            progress.update(1)
    jax.block_until_ready(state)
    if progress is not None:
        progress.close()
    return time.perf_counter() - start, state


def ppo_steps_per_second(config: PPOConfig, seeds: int, chunks: int) -> dict[str, float]:
    """Compile time, seconds per run of `chunks` chunks, and env steps/s summed over seeds."""
    static, batch = make_batch(config, seeds)
    trainer = batched(agents.make_train("ppo", static))
    state = trainer.init(batch.keys, batch.hyper)
    start = time.perf_counter()
    state, _ = trainer.update(state)  # compile + one chunk
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    seconds, _ = timed_chunks(trainer, state, chunks)
    steps = chunks * static.updates_per_chunk * static.num_envs * static.num_steps * seeds
    return {"compile_s": compile_s, "seconds": seconds, "steps_per_s": steps / seconds}


def progress_bar_cost(config: PPOConfig, chunks: int, rounds: int = 3) -> tuple[float, float]:
    """Best-of-rounds seconds for the same chunks without and with a tqdm bar."""
    static, batch = make_batch(config, 1)
    trainer = batched(agents.make_train("ppo", static))
    state = trainer.init(batch.keys, batch.hyper)
    state, _ = trainer.update(state)
    plain, with_bar = [], []
    for _ in range(rounds):
        plain.append(timed_chunks(trainer, state, chunks, bar=False)[0])
        with_bar.append(timed_chunks(trainer, state, chunks, bar=True)[0])
    return min(plain), min(with_bar)


def _shim_device_put_replicated() -> None:
    """brax 0.14.2's trainers call `jax.device_put_replicated`, removed in jax 0.10: stack one copy per device."""
    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x, devices):
        return jax.device_put(jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x), devices[0])

    jax.device_put_replicated = device_put_replicated


def brax_comparison(env_name: str, num_envs: int, unroll: int, updates: int) -> dict[str, object]:
    """brax's PPO trainer vs ours on the same brax env, batch shape and network widths: env steps/s after compile.

    One update of either = num_envs x unroll env steps, then 4 epochs of 4 minibatches of
    (num_envs / 4) x unroll steps (brax: batch_size = num_envs / 4 trajectories, num_minibatches =
    4, num_updates_per_batch = 4), policy and value MLPs (64, 64) in both. brax runs `updates`
    updates split into 3 epochs with evaluation switched off; its own `training/sps` per epoch
    excludes its evaluations; its first epoch includes its compile, and in the recorded run its
    second was as slow (1.9 k against 27.5 k steps/s: a second compile, cause not traced), so the
    last epoch is taken as its post-compile speed and all are printed. Ours scans `updates // 3` of PPO's updates (collection + learning,
    without the trainer's evaluation) as one jitted call, compiled by a first call and timed on
    a second.
    """
    import functools

    _shim_device_put_replicated()
    from brax import envs as brax_envs
    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo

    from jaxrl_suite import ppo, rollout

    sps: list[float] = []

    def progress(step, metrics):
        if "training/sps" in metrics:
            sps.append(float(metrics["training/sps"]))

    per_update = num_envs * unroll
    start = time.perf_counter()
    brax_ppo.train(
        environment=brax_envs.get_environment(env_name), num_timesteps=per_update * updates, num_envs=num_envs,
        episode_length=1000, unroll_length=unroll, batch_size=num_envs // 4, num_minibatches=4, num_updates_per_batch=4,
        num_evals=4, run_evals=False, progress_fn=progress, seed=0,
        network_factory=functools.partial(brax_networks.make_ppo_networks, policy_hidden_layer_sizes=(64, 64),
                                          value_hidden_layer_sizes=(64, 64)),
    )
    brax_total = time.perf_counter() - start

    chunk = max(updates // 3, 1)
    config = PPOConfig(env=f"brax:{env_name}", num_envs=num_envs, num_steps=unroll, update_epochs=4, num_minibatches=4,
                       num_updates=chunk, eval_every=chunk, eval_episodes=1)
    env, env_params = rollout.make_env(config)
    agent = ppo.make_agent(config, env, env_params)

    @jax.jit
    def run_updates(state, key):
        def body(s, i):
            s, _, _ = agent.update(s, jax.random.fold_in(key, i), config, i)
            return s, None

        return jax.lax.scan(body, state, jnp.arange(chunk))[0]

    state = jax.jit(agent.init, static_argnums=1)(jax.random.PRNGKey(0), config)
    start = time.perf_counter()
    state = jax.block_until_ready(run_updates(state, jax.random.PRNGKey(1)))
    ours_first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run_updates(state, jax.random.PRNGKey(2)))
    ours_seconds = time.perf_counter() - start
    return {
        "brax_epoch_sps": sps, "brax_total_s": brax_total, "ours_sps": chunk * per_update / ours_seconds,
        "ours_compile_s": ours_first - ours_seconds, "ours_seconds": ours_seconds, "ours_updates": chunk,
    }


# the CPU-sized preset each online agent's compile time is measured at (its defaults where none is named)
COMPILE_PRESETS = {"ppo": "cartpole-cpu", "sac": "cartpole-cpu", "dqn": "gymnax-cartpole", "dreamer": "cartpole-cpu",
                   "dreamer-robust": "cartpole-cpu"}


def tiny_dataset(directory: str) -> str:
    """A 400-transition random-level cartpole-balance state dataset for the offline agents' compile times."""
    from jaxrl_suite import datasets

    spec = datasets.DatasetSpec(obs="state", level="random", size=400, num_envs=4, chunk_steps=50)
    return str(datasets.save(datasets.generate(spec), f"{directory}/state_random"))


def compile_times(names: list[str]) -> dict[str, object]:
    """Seconds to compile one chunked update (one evaluation period) of each agent at a CPU preset or a tiny dataset."""
    import tempfile

    from jaxrl_suite import offline

    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as directory:
        dataset = None
        for name in names:
            entry = agents.get(name)
            config = entry.presets[COMPILE_PRESETS[name]] if name in COMPILE_PRESETS else entry.config_cls()
            if hasattr(config, "dataset"):  # offline agents train on a dataset
                dataset = dataset or tiny_dataset(directory)
                config = offline.config_for_dataset(entry.config_cls, dataset)
            label = f"{name} ({COMPILE_PRESETS.get(name, 'tiny dataset' if hasattr(config, 'dataset') else 'defaults')})"
            config = dataclasses.replace(config, num_updates=config.eval_every, evals_per_chunk=1)
            try:
                static, batch = make_batch(config, 1)
                trainer = batched(agents.make_train(name, static))
            except ValueError as err:
                out[label] = f"skipped: {err}"
                continue
            state = trainer.init(batch.keys, batch.hyper)
            start = time.perf_counter()
            trainer.update.lower(state).compile()
            out[label] = time.perf_counter() - start
    return out


def main() -> None:
    """Run every section and print the figures with their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer chunks: a smoke run")
    parser.add_argument("--skip-brax", action="store_true")
    parser.add_argument("--brax-env", default="inverted_pendulum")
    parser.add_argument("--brax-updates", type=int, default=120, help="brax's run length in updates (3 epochs)")
    args = parser.parse_args()
    chunks = 2 if args.quick else 5
    bench_start = time.perf_counter()
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.device_count()} device(s))\n")

    gymnax_ppo = PPOConfig(env="gymnax:CartPole-v1", num_envs=16, num_steps=128, update_epochs=4, num_minibatches=4,
                           num_updates=50, eval_every=10, eval_episodes=4)
    print("1. our PPO on gymnax CartPole-v1, 16 envs x 128 steps (anchor: 79 k steps/s, 1 seed, 2-core CPU)")
    base = None
    for seeds in (1, 4, 16):
        r = ppo_steps_per_second(gymnax_ppo, seeds, chunks)
        base = base or r["seconds"]
        print(f"   {seeds:2d} seeds: {r['steps_per_s']:>12,.0f} env steps/s  wall {r['seconds']:.2f} s "
              f"({r['seconds'] / base:.2f}x one seed)  compile+first chunk {r['compile_s']:.1f} s")

    if not args.skip_brax:
        updates = 15 if args.quick else args.brax_updates
        print(f"\n2. brax PPO trainer vs ours on brax '{args.brax_env}' (16 envs x 64 steps per update, {updates} brax updates)")
        try:
            r = brax_comparison(args.brax_env, 16, 64, updates)
        except Exception as err:  # a bench run by hand: say what broke and go on to the other sections
            print(f"   FAILED: {type(err).__name__}: {err}")
            r = None
    if not args.skip_brax and r is not None:
        epochs = ", ".join(f"{v:,.0f}" for v in r["brax_epoch_sps"])
        brax_sps = r["brax_epoch_sps"][-1] if r["brax_epoch_sps"] else float("nan")
        print(f"   brax:  training/sps per epoch [{epochs}] (the first includes compile); total incl. compile {r['brax_total_s']:.1f} s")
        print(f"   ours:  {r['ours_sps']:>10,.0f} env steps/s over {r['ours_updates']} updates ({r['ours_seconds']:.1f} s), "
              f"compile {r['ours_compile_s']:.1f} s   ratio ours/brax(last epoch) {r['ours_sps'] / brax_sps:.2f}x")

    plain, with_bar = progress_bar_cost(gymnax_ppo, chunks=10)
    print(f"\n3. progress bar: {plain:.3f} s without, {with_bar:.3f} s with -> cost {100 * (with_bar / plain - 1):+.1f}% (target < 5%)")

    print("\n4. compile time of one chunked update per agent (target < 60 s on CPU)")
    for name, seconds in compile_times(agents.list_agents()).items():
        shown = f"{seconds:.1f} s" + ("" if seconds < 60 else "  (over target)") if isinstance(seconds, float) else seconds
        print(f"   {name:32s} {shown}")
    print(f"\nwhole bench: {time.perf_counter() - bench_start:.0f} s")


if __name__ == "__main__":
    main()

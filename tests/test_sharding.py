"""Scaling out (jaxrl_suite.sharding): sharded sweeps match unsharded ones, processes match devices, chunking matches one batch.

XLA_FLAGS (forced host devices) and jax.distributed must be set before JAX starts, so the
multi-device and multi-process checks run in subprocesses sharing the tests' compilation cache;
the helpers' own contracts (padding, placement, option parsing) run in this process.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxrl_suite import ppo, runs, sharding
from jaxrl_suite.config import make_batch
from jaxrl_suite.training import TrainState

CACHE = os.path.abspath(os.environ.get("JAXRL_SUITE_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")))
TIMEOUT_S = 600
# a tiny PPO sweep: 2 learning rates x 4 seeds = 8 members, 2 chunks of one update each
TINY_FLAGS = [
    "--env", "cartpole-balance", "--action-repeat", "8", "--num-envs", "4", "--num-steps", "16", "--update-epochs", "1",
    "--num-minibatches", "2", "--hidden-sizes", "16", "16", "--num-updates", "2", "--eval-every", "1", "--evals-per-chunk", "1",
    "--eval-episodes", "2",
]
TINY = ppo.PPOConfig(
    env="cartpole-balance", action_repeat=8, num_envs=4, num_steps=16, update_epochs=1, num_minibatches=2, hidden_sizes=(16, 16),
    num_updates=2, eval_every=1, evals_per_chunk=1, eval_episodes=2,
)
SWEEP = [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]

# runs in a process with 4 forced CPU devices: the same 8-member sweep unsharded, sharded, and chunked by memory
FOUR_DEVICE_WORKER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from jaxrl_suite import agents, ppo, runs, sharding
    from jaxrl_suite.config import make_batch
    from jaxrl_suite.training import batched

    out = sys.argv[1]
    config = ppo.PPOConfig.from_dict(json.loads(sys.argv[2]))
    sweep = json.loads(sys.argv[3])
    static, batch = make_batch(config, 4, sweep)
    trainer = batched(agents.make_train("ppo", static))
    report = {"devices": len(jax.devices())}

    # the layout itself: every leaf of the state and of the metrics split over the 4 devices
    plan = sharding.plan_batch(trainer, batch.keys, batch.hyper, devices="all")
    state, metrics = plan.update_fn(plan.init(batch.keys, batch.hyper))
    leaves = jax.tree.leaves((state, metrics))
    report["leaf_device_counts"] = sorted({len(x.sharding.device_set) for x in leaves})
    report["leaf_specs"] = sorted({str(tuple(x.sharding.spec)) for x in leaves})
    report["shard_rows"] = sorted({s.data.shape[0] for x in leaves for s in x.addressable_shards})

    # a memory limit that fits 2 members per call on one device: the plan must split 8 members into 4 calls
    two = jax.eval_shape(trainer.init, *jax.tree.map(lambda x: x[:2], (batch.keys, batch.hyper)))
    limit = sharding.estimate_memory(trainer.update, two).bytes_per_device
    report["memory_limit_bytes"] = limit

    for name, kwargs in (("unsharded", {"devices": 1}), ("sharded", {"devices": "all"}), ("chunked", {"devices": 1, "memory_limit_bytes": limit})):
        summary = runs.run(config, f"{out}/{name}", num_seeds=4, overrides=sweep, agent="ppo", progress=False, checkpoint=name != "unsharded", **kwargs)
        report[name] = summary["layout"]
    json.dump(report, open(f"{out}/report.json", "w"))
    """
)


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XLA_FLAGS": f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip(),
        "JAX_PLATFORMS": "cpu",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
        "JAX_COMPILATION_CACHE_DIR": CACHE,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.3",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    })
    return env


def _check(proc: subprocess.Popen, what: str) -> None:
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}"


def _metric_rows(run_dir) -> list[dict[str, str]]:
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _metric_arrays(run_dir) -> dict[str, np.ndarray]:
    rows = _metric_rows(run_dir)
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "member"}


def _restored(run_dir) -> TrainState:
    _, static, batch, trainer = runs.load_run(run_dir)
    state, _ = runs.restore_state(run_dir, trainer, batch.keys, batch.hyper)
    return state


def _assert_close(actual: dict[str, np.ndarray], desired: dict[str, np.ndarray]) -> None:
    """Metrics equal to float32 tolerance: returns (0..1000) to 1e-2, everything else to 1e-5 relative."""
    assert actual.keys() == desired.keys()
    for name in desired:
        atol = 1e-2 if name.startswith("return") else 1e-6
        np.testing.assert_allclose(actual[name], desired[name], rtol=1e-5, atol=atol, err_msg=name)


def _max_abs_difference(a, b) -> float:
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        assert np.array_equal(np.isnan(x), np.isnan(y))
        finite = ~np.isnan(x)
        if finite.any():
            worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]))))
    return worst


# ---- in-process contracts --------------------------------------------------------------------------


def test_pad_batch_repeats_real_members_and_gather_drops_them():
    tree = {"a": np.arange(6, dtype=np.float32).reshape(3, 2), "b": np.array([10, 11, 12], np.int32)}
    assert sharding.padded_size(3, 4) == 4 and sharding.padded_size(8, 4) == 8 and sharding.padded_size(1, 2) == 2
    padded = sharding.pad_batch(tree, 5)
    np.testing.assert_array_equal(padded["b"], [10, 11, 12, 10, 11])
    np.testing.assert_array_equal(padded["a"][3:], tree["a"][:2])
    mesh = sharding.batch_mesh()
    placed = sharding.shard_batch(tree, mesh)
    assert placed["a"].shape == (sharding.padded_size(3, mesh.size), 2)
    assert placed["a"].sharding == sharding.batch_sharding(mesh)
    back = sharding.gather_batch(placed, 3)
    np.testing.assert_array_equal(back["a"], tree["a"])
    np.testing.assert_array_equal(back["b"], tree["b"])
    with pytest.raises(ValueError, match="same leading"):
        sharding.shard_batch({"a": np.zeros(3), "b": np.zeros(4)}, mesh)


def test_bad_scaling_options_name_the_value_and_the_choices():
    for bad in ("some", "0", "-2", "1.5"):
        with pytest.raises(ValueError, match="'all' or a positive number"):
            sharding.select_devices(bad)
    with pytest.raises(ValueError, match="local devices"):
        sharding.select_devices(jax.local_device_count() + 1)
    assert sharding.select_devices("all") == jax.devices() and sharding.select_devices(1) == jax.devices()[:1]
    assert sharding.parse_bytes("2GiB") == 2 * 2**30 and sharding.parse_bytes("512MB") == 512 * 10**6 and sharding.parse_bytes("1e6") == 10**6
    with pytest.raises(ValueError, match="8GiB"):
        sharding.parse_bytes("lots")
    with pytest.raises(ValueError, match="give all three"):
        sharding.initialize_distributed(coordinator_address="localhost:1234")
    with pytest.raises(ValueError, match="host:port"):
        sharding.initialize_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id=2 must be in \[0, num_processes=2\)"):
        sharding.initialize_distributed("localhost:1234", 2, 2)
    assert sharding.initialize_distributed() is False  # no flags, no variables: a single-process run
    _, batch = make_batch(TINY, 2, None)
    from jaxrl_suite import agents
    from jaxrl_suite.training import batched

    trainer = batched(agents.make_train("ppo", TINY))
    with pytest.raises(ValueError, match="memory_limit_bytes=0"):
        sharding.plan_batch(trainer, batch.keys, batch.hyper, memory_limit_bytes=0)
    with pytest.raises(ValueError, match="members_per_call=0"):
        sharding.plan_batch(trainer, batch.keys, batch.hyper, members_per_call=0)


def test_cli_splits_scaling_options_from_the_command():
    from jaxrl_suite import cli

    options, rest = cli.scaling_options(["--agent", "ppo", "--devices", "1", "--memory-limit", "1GiB", "--distractor", "twin", "--num-processes", "2"])
    assert rest == ["--agent", "ppo", "--distractor", "twin"]
    assert (options.devices, options.memory_limit, options.num_processes, options.distributed) == ("1", "1GiB", 2, False)
    assert cli.main(["train", "--devices", "nine", "--out", "x"]) == 2  # refused before anything compiles


def test_cli_and_sharding_import_without_starting_the_backend():
    # jax.distributed.initialize must come before the backend starts, and the CLI calls it after
    # importing itself: an import that touches a device (e.g. gymnax's module constants) breaks multi-host
    probe = (
        "import jax._src.xla_bridge as xb\n"
        "def started(*a, **k): raise SystemExit('the backend started during import')\n"
        "xb.backends = started\n"
        "import jaxrl_suite.cli, jaxrl_suite.sharding\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=_env(1), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]


# ---- four forced CPU devices -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("four_devices")
    script = out / "worker.py"
    script.write_text(FOUR_DEVICE_WORKER)
    config = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.to_dict().items()})
    proc = subprocess.Popen([sys.executable, str(script), str(out), config, json.dumps(SWEEP)], env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _check(proc, "the 4-device worker")
    return out, json.loads((out / "report.json").read_text())


def test_sharded_sweep_matches_unsharded_run_and_stays_sharded(four_devices):
    out, report = four_devices
    assert report["devices"] == 4
    # every leaf of state and metrics split over all 4 devices, 2 of the 8 members on each
    assert report["leaf_device_counts"] == [4] and report["leaf_specs"] == ["('batch',)"] and report["shard_rows"] == [2]
    assert report["sharded"]["devices"] == 4 and report["sharded"]["members_per_call"] == 8 and report["sharded"]["padded_members"] == 0
    assert report["unsharded"]["devices"] == 1 and report["unsharded"]["sub_batches"] == 1
    unsharded, sharded = _metric_arrays(out / "unsharded"), _metric_arrays(out / "sharded")
    assert unsharded.keys() == sharded.keys() and len(unsharded["return_mean"]) == 8 * 2
    for name in ("member_seed", "learning_rate", "step", "env_steps", "diverged"):
        np.testing.assert_array_equal(sharded[name], unsharded[name])
    # 8 members on one device vs 2 on each of 4: XLA vectorises the batch differently, so float32
    # sums associate differently (measured: returns differ by <= 2e-4 of ~500, losses by <= 4e-6)
    _assert_close(sharded, unsharded)


def test_memory_chunking_gives_the_results_of_one_batch(four_devices):
    out, report = four_devices
    chunked = report["chunked"]
    # the limit fits 2 members: 8 members run as 4 sequential calls on one device, no padding
    assert chunked["members_per_call"] == 2 and chunked["sub_batches"] == 4 and chunked["padded_members"] == 0
    assert chunked["memory_method"] == "memory_analysis" and 0 < chunked["memory_bytes_per_member"] <= report["memory_limit_bytes"] / 2
    one_batch, sub_batches = _metric_arrays(out / "unsharded"), _metric_arrays(out / "chunked")
    np.testing.assert_array_equal(sub_batches["member_seed"], one_batch["member_seed"])
    # members in the same order with the same keys; calls of 2 instead of 8 vectorise differently
    # (measured: returns differ by <= 9e-4 of ~500), so equal to float32 tolerance, not bitwise
    _assert_close(sub_batches, one_batch)
    # the checkpoint of a chunked run (host state) restores like a device one: same members, close values
    chunked_state, sharded_state = _restored(out / "chunked"), _restored(out / "sharded")
    np.testing.assert_array_equal(chunked_state.step, [2] * 8)
    np.testing.assert_array_equal(chunked_state.key, sharded_state.key)  # key chains never touch float maths
    assert _max_abs_difference(chunked_state.agent, sharded_state.agent) < 1e-2


# ---- two processes on localhost --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train_command(out_dir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jaxrl_suite.cli", "train", "--agent", "ppo", "--seeds", "2", "--sweep", "learning-rate=1e-3,3e-3",
            "--out", str(out_dir), "--no-progress", *TINY_FLAGS, *extra]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    # the reference: one process with two forced host devices
    single = subprocess.Popen(_train_command(out / "one_process"), env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _check(single, "the one-process, two-device run")
    port = _free_port()
    procs = [
        subprocess.Popen(
            _train_command(out / "two_processes", "--coordinator-address", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)),
            env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for i, proc in enumerate(procs):
        _check(proc, f"process {i} of the two-process run")
    return out


def test_two_process_run_matches_two_device_run_bitwise(two_processes):
    out = two_processes
    multi, single = out / "two_processes", out / "one_process"
    layout = json.loads((multi / "summary.json").read_text())["layout"]
    assert (layout["processes"], layout["devices"], layout["members"], layout["sub_batches"]) == (2, 2, 4, 1)
    assert json.loads((single / "summary.json").read_text())["layout"]["processes"] == 1
    # process 0 wrote every member's rows; the same text as the one-process run, so bitwise the same numbers
    rows = _metric_rows(multi)
    assert sorted({r["member"] for r in rows}) == ["0", "1", "2", "3"] and len(rows) == 4 * 2
    assert rows == _metric_rows(single)
    # both processes wrote their shards of one orbax checkpoint; it restores to the one-process state exactly
    assert sorted(int(n) for n in os.listdir(multi / "checkpoints") if n.isdigit()) == [1, 2]
    assert _max_abs_difference(_restored(multi), _restored(single)) == 0.0
    assert len(os.listdir(multi / "tensorboard")) == 1  # one event file: process 0 alone writes

"""Reliability of runs: exact resume after SIGKILL, and a diverging member isolated in every agent family.

Resume: `jaxrl-suite train` is started as a subprocess, killed with SIGKILL once it has committed
two orbax checkpoints, its newest checkpoint is turned back into a half-written one (orbax's
uncommitted temporary directory name), the rows written after the surviving checkpoint are
tampered with and a truncated temporary metrics file is left beside them; `--resume` must
then end with a metrics.csv byte-identical to an uninterrupted run's.

Divergence isolation: for each family a batch [sane, sane, BAD] (BAD: an exploding learning
rate, a sweepable field) must flag member 2 diverged in the metrics, the metrics.csv rows and
summary.json, and members 0 and 1 must equal, bitwise, members 0 and 1 of [sane, sane, sane]
(same batch layout, so the same compiled program computes them).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrl_suite import cli, config as cfg_lib, datasets, dqn, offline, ppo, runs, sac, training
from jaxrl_suite.world_models import dreamer, robust

# ---------------------------------------------------------------------------------------------- resume

# test_runs.TINY's shapes (2 members, 2 evaluations per chunk), so the compiled chunk is shared;
# 12 chunks give the kill a window between the second checkpoint and the end
RESUME_ARGS = [
    "--agent", "ppo", "--env", "cartpole-balance", "--seeds", "2", "--no-progress", "--action-repeat", "8", "--num-envs", "4",
    "--num-steps", "16", "--update-epochs", "1", "--num-minibatches", "2", "--hidden-sizes", "16", "16", "--num-updates", "24",
    "--eval-every", "1", "--evals-per-chunk", "2", "--eval-episodes", "2", "--learning-rate", "1e-3", "--normalize-obs",
    "--normalize-reward",
]
SENTINEL = 12345.0  # written into rows after the surviving checkpoint; must not survive the resume


def _committed_steps(run_dir: Path) -> list[int]:
    """Checkpoint steps orbax has committed (finished temporary directories renamed to the bare step)."""
    ckpt = run_dir / "checkpoints"
    return sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) if ckpt.exists() else []


def _subprocess_env() -> dict[str, str]:
    """The test process's environment plus its persistent compilation cache, so the child compiles nothing new."""
    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.3"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def _kill_after_two_checkpoints(run_dir: Path, timeout_s: float = 240.0) -> None:
    """Start `jaxrl-suite train` on RESUME_ARGS and SIGKILL it once two checkpoints are committed."""
    cmd = [sys.executable, "-m", "jaxrl_suite.cli", "train", *RESUME_ARGS, "--out", str(run_dir)]
    proc = subprocess.Popen(cmd, env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while len(_committed_steps(run_dir)) < 2:
            if proc.poll() is not None:
                pytest.fail(f"training subprocess ended (rc {proc.returncode}) before two checkpoints: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no two committed checkpoints in {timeout_s} s")
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def test_sigkilled_run_resumes_to_bitwise_the_uninterrupted_metrics(tmp_path):
    reference = tmp_path / "reference"
    assert cli.main(["train", *RESUME_ARGS, "--out", str(reference)]) == 0

    killed = tmp_path / "killed"
    _kill_after_two_checkpoints(killed)
    assert not (killed / "summary.json").exists(), "the run finished before the kill; nothing was tested"
    committed = _committed_steps(killed)
    assert committed[-1] < 24

    # the newest checkpoint becomes half-written: orbax's name for a directory it has not committed
    newest = committed[-1]
    (killed / "checkpoints" / str(newest)).rename(killed / "checkpoints" / f"{newest}.orbax-checkpoint-tmp-1234567890")
    survivor = committed[-2]
    # every row after the surviving checkpoint (at least those of `newest`, written before its save) is spoilt
    rows = runs.read_csv(killed / "metrics.csv")
    assert max(int(r["step"]) for r in rows) >= newest > survivor
    for r in rows:
        if int(r["step"]) > survivor:
            r["return_mean"] = str(SENTINEL)
    with open(killed / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # and a truncated temporary file, as a kill in the middle of `atomic_write_bytes` leaves
    good = (reference / "metrics.csv").read_bytes()
    (killed / ".metrics.csv.tmp99999").write_bytes(good[: len(good) // 3])

    # without --resume the CLI refuses to touch a directory holding a run
    assert cli.main(["train", *RESUME_ARGS, "--out", str(killed)]) == 2
    assert cli.main(["train", *RESUME_ARGS, "--out", str(killed), "--resume"]) == 0

    resumed = (killed / "metrics.csv").read_bytes()
    assert str(SENTINEL).encode() not in resumed
    assert resumed == good  # bitwise the uninterrupted run, every row and column
    ref_summary = json.loads((reference / "summary.json").read_text())
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["final_return"] == ref_summary["final_return"] and summary["diverged"] == [False, False]
    # the stale temporary file and the uncommitted checkpoint are gone; the final checkpoint is committed
    assert not [n for n in os.listdir(killed) if ".tmp" in n]
    assert not [n for n in os.listdir(killed / "checkpoints") if "tmp" in n]
    assert _committed_steps(killed)[-1] == 24


# ---------------------------------------------------------------------------------- divergence isolation

# tiny configs as in each family's own tests; every one has a sweepable learning rate to explode
PPO_TINY = ppo.PPOConfig(
    env="cartpole-balance", action_repeat=8, num_envs=4, num_steps=16, update_epochs=1, num_minibatches=2, hidden_sizes=(16, 16),
    num_updates=4, eval_every=1, evals_per_chunk=2, eval_episodes=2, normalize_obs=True, normalize_reward=True,
)
SAC_TINY = sac.SACConfig(
    env="cartpole-balance", action_repeat=8, num_envs=2, collect_steps=2, gradient_steps=2, batch_size=16, buffer_size=200,
    warmup_steps=8, hidden_sizes=(16, 16), num_updates=8, eval_every=2, evals_per_chunk=2, eval_episodes=2,
)
DQN_TINY = dqn.DQNConfig(
    env="exo-gridworld", num_envs=2, collect_steps=2, gradient_steps=2, batch_size=16, buffer_size=200, warmup_steps=0,
    hidden_sizes=(16,), target_update_every=3, num_updates=8, eval_every=2, evals_per_chunk=2, eval_episodes=2,
)
DREAMER_TINY = dreamer.DreamerConfig(
    env="cartpole-balance", action_repeat=8, num_envs=2, collect_steps=4, train_steps=1, batch_size=4, seq_len=6,
    replay_capacity=48, prefill=8, deter_size=16, stoch_size=4, classes=4, hidden=16, layers=1, num_bins=31, horizon=3,
    num_updates=4, eval_every=1, evals_per_chunk=2, eval_episodes=2,
)
OFFLINE_TINY = dict(num_updates=4, eval_every=2, eval_episodes=2, batch_size=8, hidden_sizes=(16, 16))
# tests/offline/conftest.py's state dataset spec, so its generation program is shared
DATASET_SPEC = dict(obs="state", distractor="noise", difficulty="hard", level="random", image_size=16, action_repeat=8,
                    size=400, num_envs=4, chunk_steps=50)

# family -> (agent name, the sweepable learning-rate fields, sane values of members 0..2)
FAMILIES = {
    "ppo": ("ppo", ("learning_rate",), (1e-3, 3e-3, 2e-3)),
    "sac": ("sac", ("actor_lr", "critic_lr"), (3e-4, 1e-3, 6e-4)),
    "dqn": ("dqn", ("learning_rate",), (2.5e-4, 1e-3, 5e-4)),
    "bc": ("bc", ("learning_rate",), (3e-4, 1e-3, 6e-4)),
    "td3bc": ("td3bc", ("learning_rate",), (3e-4, 1e-3, 6e-4)),
    "iql": ("iql", ("learning_rate",), (3e-4, 1e-3, 6e-4)),
    "cql": ("cql", ("learning_rate", "actor_learning_rate"), (3e-4, 1e-3, 6e-4)),
    "dreamer": ("dreamer", ("model_lr",), (1e-4, 3e-4, 2e-4)),
    "dreamer-robust": ("dreamer-robust", ("model_lr",), (1e-4, 3e-4, 2e-4)),
}
EXPLODING_LR = 1e30  # Adam's first step moves every weight by ~lr, so the next forward pass overflows float32


@pytest.fixture(scope="module")
def offline_dataset(tmp_path_factory):
    """A 400-transition random-level state dataset on cartpole-balance with the noise distractor."""
    spec = datasets.DatasetSpec(**DATASET_SPEC)
    return datasets.save(datasets.generate(spec), tmp_path_factory.mktemp("data") / "state_random")


def _family_config(family: str, dataset_path: Path | None):
    """The tiny config of one family (offline ones read their env from the dataset's sidecar)."""
    if family in ("bc", "td3bc", "iql", "cql"):
        from jaxrl_suite import agents

        return offline.config_for_dataset(agents.get(family).config_cls, dataset_path, **OFFLINE_TINY)
    return {"ppo": PPO_TINY, "sac": SAC_TINY, "dqn": DQN_TINY, "dreamer": DREAMER_TINY,
            "dreamer-robust": robust.from_dreamer(DREAMER_TINY)}[family]


def run_with_member_lrs(family: str, lrs: tuple[float, ...], out: Path, dataset_path: Path | None = None):
    """Run the family's tiny config as one batch whose member i sets every learning-rate field to lrs[i].

    Returns (metrics.csv rows as text dicts, summary.json); no checkpoints, no progress bar.
    """
    agent, fields, _ = FAMILIES[family]
    overrides = [{name: lr for name in fields} for lr in lrs]
    runs.run(_family_config(family, dataset_path), out, num_seeds=1, overrides=overrides, agent=agent, progress=False, checkpoint=False)
    return runs.read_csv(out / "metrics.csv"), json.loads((out / "summary.json").read_text())


# the default run covers each kind of code path (on-policy, off-policy continuous and discrete, the
# shared offline trainer with one and with two optimisers, the world-model trainer through its robust
# variant); the families that add no new path run with -m slow, to keep the default suite short
SLOW_FAMILIES = ("td3bc", "iql", "dreamer")


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAMILIES else f for f in FAMILIES])
def test_exploding_member_is_flagged_and_the_others_are_bitwise_unchanged(family, tmp_path, request):
    dataset_path = request.getfixturevalue("offline_dataset") if family in ("bc", "td3bc", "iql", "cql") else None
    sane = FAMILIES[family][2]
    bad_rows, bad_summary = run_with_member_lrs(family, (sane[0], sane[1], EXPLODING_LR), tmp_path / "bad", dataset_path)
    ref_rows, ref_summary = run_with_member_lrs(family, sane, tmp_path / "sane", dataset_path)

    # member 2 is flagged in its last metrics.csv row and in summary.json; nobody else ever is
    last_step = max(int(r["step"]) for r in bad_rows)
    assert [int(r["diverged"]) for r in bad_rows if r["member"] == "2" and int(r["step"]) == last_step] == [1]
    assert bad_summary["diverged"] == [False, False, True]
    assert ref_summary["diverged"] == [False, False, False]
    assert not any(int(r["diverged"]) for r in bad_rows if r["member"] != "2")
    # its loss columns stop changing once it is frozen (its evaluation may be NaN: the last finite
    # parameters can already hold ~1e30 weights, finite but useless; the flag is the signal)
    frozen = [r for r in bad_rows if r["member"] == "2" and int(r["diverged"])]
    assert frozen, "member 2 never diverged"

    # members 0 and 1: every column of every row, as text, equals the all-sane batch's (same layout)
    healthy_bad = [r for r in bad_rows if r["member"] != "2"]
    healthy_ref = [r for r in ref_rows if r["member"] != "2"]
    assert len(healthy_bad) == len(healthy_ref) == 2 * len({r["step"] for r in ref_rows})
    assert healthy_bad == healthy_ref
    assert bad_summary["final_return"][:2] == ref_summary["final_return"][:2]

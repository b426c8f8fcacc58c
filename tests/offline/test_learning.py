"""Slow: on a state medium-replay dataset of cartpole-balance, TD3+BC and IQL beat behaviour cloning.

The dataset is made here by our own pipeline (PPO from state, action repeat 4, snapshots rolled
out up to the medium one; 50k transitions). Each agent trains SEEDS vmapped seeds in one program
with the `cpu` pipeline preset's networks and NUM_UPDATES updates, and is scored by its final
evaluation, normalised with `jaxrl_suite.references` (expert = the 1000 upper bound).

Why this is not fragile: an earlier version (3 seeds, 4000 updates of 256-unit networks) had
TD3+BC at 11.7 against BC's 10.2, inside the seed noise. TD3+BC's critic needs far more updates
than BC before its Q term helps (the paper trains for 1e6). Measured on this dataset with these
networks (5 seeds, mean normalised score at 5k, 10k, ..., 30k updates): TD3+BC 25.8, 29.8, 42.0,
44.3, 54.3, 67.0; BC 25.2, 26.2, 20.8, 24.3, 27.1, 22.8 (flat). At NUM_UPDATES = 20k every agent
gets the same budget and the test asserts that each of TD3+BC and IQL beats BC by more than
twice the standard error of the difference of means (about a one-sided 97.5% test over seeds).
"""

import time

import numpy as np
import pytest

from jaxrl_suite import agents, config as cfg_lib, datasets, offline, pretrain, training

SEEDS = 5
NUM_UPDATES = 20_000


@pytest.mark.slow
def test_td3bc_and_iql_beat_bc_on_state_medium_replay(tmp_path):
    spec = datasets.DatasetSpec(
        env="cartpole-balance", obs="state", distractor="none", difficulty="none", action_repeat=4,
        level="medium-replay", size=50_000, num_envs=10, seed=0,
    )
    npz = datasets.generate_and_save(spec, tmp_path / "cartpole_medium_replay")
    scores, timings = {}, {}
    for name in ("bc", "td3bc", "iql"):
        start = time.perf_counter()
        budget = {**pretrain.PRESETS["cpu"], "num_updates": NUM_UPDATES, "eval_every": NUM_UPDATES // 2, "eval_episodes": 10}
        config = offline.config_for_dataset(agents.get(name).config_cls, npz, **budget)
        static, batch = cfg_lib.make_batch(config, SEEDS)
        _, metrics = training.batched(agents.make_train(name, static)).train(batch.keys, batch.hyper)
        assert not np.asarray(metrics["diverged"]).any(), name
        final = np.asarray(metrics["return_mean"])[:, -1]
        scores[name] = datasets.normalized_score("cartpole-balance", final, action_repeat=4)
        timings[name] = time.perf_counter() - start
    print({k: (np.round(v, 1).tolist(), round(timings[k], 1)) for k, v in scores.items()})

    def variance_of_mean(values):
        return float(np.var(values, ddof=1) / len(values))

    for name in ("td3bc", "iql"):
        margin = 2.0 * np.sqrt(variance_of_mean(scores[name]) + variance_of_mean(scores["bc"]))
        assert scores[name].mean() - scores["bc"].mean() > margin, (name, scores)

"""Two-stage offline pipelines: pretrain an encoder on the dataset, freeze it, train TD3+BC or IQL on top.

As in BPR (Zang et al. 2023), ACRO (Islam et al. 2022) and the offline-bisimulation fixes (Zang
et al., NeurIPS 2023): stage one trains the encoder with a representation objective on dataset
minibatches only; stage two trains an offline agent on the frozen encoding. Both stages are one
jitted program per batch of seeds: the agent's `init` pretrains each member's encoder from the
member's own key (`offline.Features.init`), so `jax.vmap` over seeds gives every seed its own
encoder, and the agent then reads it under stop-gradient.

`REPRESENTATIONS` names the settings compared by the issue's experiment:

    raw            no pretraining: standardised states, or the end-to-end CNN for pixels
    bpr            behaviour prior representation
    acro           multi-step inverse model
    simsr          SimSR, Huber loss
    simsr-fixed    SimSR with expectile 0.7 + reward scaling (Zang et al. 2023)
    mico           MICo, Huber loss
    mico-fixed     MICo with expectile 0.7 + reward scaling

`run_pipeline(agent, dataset, representation, out_dir, ...)` runs one setting (writes the usual
run directory via `runs.run`, then probes each member's frozen encoder for endo/exo R^2 on the
dataset and writes `pipeline.json`); `compare(...)` runs several and tabulates normalised scores
with 95% bootstrap intervals over seeds. Presets: "cpu" (64-unit networks, 1k pretraining
steps, 5k agent updates: one run of 5 seeds in about 1-2.5 minutes on a shared 2-core CPU,
measured by experiments/offline-exo.toml), "gpu" (the papers' 256-unit networks, 1e5
pretraining steps, 1e5 agent updates) and "tiny" (tests). `experiments/offline-exo.toml` runs
these pipelines from an experiment file (`jaxrl_suite.experiments`, offline grids).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_suite import datasets, offline

AGENTS = ("td3bc", "iql")

# name -> OfflineConfig overrides
REPRESENTATIONS: dict[str, dict[str, Any]] = {
    "raw": {"representation": "none"},
    "bpr": {"representation": "bpr"},
    "acro": {"representation": "acro"},
    "simsr": {"representation": "simsr"},
    "simsr-fixed": {"representation": "simsr", "bisim_expectile": 0.7, "bisim_reward_scaling": True},
    "mico": {"representation": "mico"},
    "mico-fixed": {"representation": "mico", "bisim_expectile": 0.7, "bisim_reward_scaling": True},
}

# name -> OfflineConfig overrides of the budget
PRESETS: dict[str, dict[str, Any]] = {
    # a state dataset on a shared 2-core CPU: IQL raw, 5 seeds, about 70 s; a pretrained encoder about 130 s
    # (measured with other jobs running); 256-unit networks were 8x slower per update there
    "cpu": {
        "pretrain_steps": 1_000, "num_updates": 5_000, "eval_every": 1_000, "batch_size": 256, "pretrain_batch_size": 256, "eval_episodes": 5,
        "hidden_sizes": (64, 64), "encoder_hidden": (64, 64), "latent_dim": 32,
    },
    # the papers' budgets: 1e5 pretraining steps, 1e5 (BPR/ACRO's downstream runs use up to 1e6) updates
    "gpu": {"pretrain_steps": 100_000, "num_updates": 100_000, "eval_every": 5_000, "batch_size": 256, "eval_episodes": 10},
    # seconds: for tests and smoke runs
    "tiny": {
        "pretrain_steps": 5, "num_updates": 4, "eval_every": 2, "batch_size": 16, "pretrain_batch_size": 16, "eval_episodes": 2,
        "hidden_sizes": (16, 16), "encoder_hidden": (16,), "latent_dim": 8, "cnn_channels": (4, 4), "cnn_strides": (2, 2), "cnn_features": 8,
    },
}


def agent_config_class(agent: str) -> type:
    """The config class of TD3+BC or IQL; other names are refused with the valid ones."""
    from jaxrl_suite import agents

    if agent not in AGENTS:
        raise ValueError(f"agent={agent!r} for a pretraining pipeline; valid: {list(AGENTS)}")
    return agents.get(agent).config_cls


def preset_overrides(preset: str) -> dict[str, Any]:
    """The config overrides of a budget preset; unknown names are refused with the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}; valid: {sorted(PRESETS)}")
    return PRESETS[preset]


def preset_config(config_cls: type, preset: str) -> offline.OfflineConfig:
    """An offline agent's default config with a budget preset applied (no dataset yet: the experiment runner fills it in)."""
    return config_cls(**preset_overrides(preset))


def pipeline_config(agent: str, dataset: str | os.PathLike, representation: str, preset: str = "cpu", **overrides: Any) -> offline.OfflineConfig:
    """The agent's config for the dataset's env with a representation setting and a budget preset."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation={representation!r}; valid: {sorted(REPRESENTATIONS)}")
    budget = preset_overrides(preset)
    config = offline.config_for_dataset(agent_config_class(agent), dataset, **{**budget, **REPRESENTATIONS[representation], **overrides})
    config.validate()
    return config


def probe_members(out_dir: str | os.PathLike, num_samples: int = 2000, seed: int = 0) -> list[dict[str, float]]:
    """Held-out ridge R^2 of every member's encoding for the dataset's endo and exo vectors (from the last checkpoint)."""
    from jaxrl_suite import probe
    from jaxrl_suite.runs import load_run, restore_state

    _, static, batch, trainer = load_run(out_dir)
    state, _ = restore_state(out_dir, trainer, batch.keys, batch.hyper)
    if state is None:
        raise ValueError(f"{out_dir} holds no checkpoint to probe")
    setup = offline.setup(static)
    rows = np.random.default_rng(seed).choice(setup.dataset.size, size=min(num_samples, setup.dataset.size), replace=False)
    obs = jnp.asarray(setup.dataset.observations[rows])
    endo, exo = setup.dataset.arrays["endo"][rows], setup.dataset.arrays["exo"][rows]
    encoders = state.agent.params["encoder"]

    @jax.jit
    def embed(enc):
        return setup.features(enc, obs)

    results = []
    for member in range(batch.size):
        z = embed(jax.tree.map(lambda x: x[member], encoders))
        scores = probe.probe_embeddings(z, endo, exo, jax.random.PRNGKey(seed + member))
        results.append({"endo_r2": float(scores["endo_r2"]), "exo_r2": float(scores["exo_r2"])})
    return results


def run_pipeline(
    agent: str,
    dataset: str | os.PathLike,
    representation: str,
    out_dir: str | os.PathLike,
    num_seeds: int = 5,
    preset: str = "cpu",
    progress: bool = True,
    probe_encoders: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Pretrain (when the representation asks for it), freeze, train the agent; write the run dir and `pipeline.json`."""
    from jaxrl_suite.runs import atomic_write_json, run

    config = pipeline_config(agent, dataset, representation, preset, **overrides)
    summary = run(config, out_dir, num_seeds=num_seeds, agent=agent, progress=progress)
    meta = datasets.read_meta(dataset)
    scores = datasets.normalized_score(config.env, np.asarray(summary["final_return"]), config.action_repeat)
    result = {
        "agent": agent,
        "representation": representation,
        "preset": preset,
        "dataset": str(dataset),
        "dataset_level": meta["level"],
        "distractor": f"{meta['distractor']}/{meta['difficulty']}",
        "final_return": summary["final_return"],
        "normalized_score": scores.tolist(),
        "normalized_score_mean": float(np.mean(scores)),
        "normalized_score_ci95": list(bootstrap(scores)),
        "wall_time_s": summary["wall_time_s"],
    }
    if probe_encoders:
        result["probe"] = probe_members(out_dir)
    atomic_write_json(Path(out_dir) / "pipeline.json", result)
    return result


def bootstrap(values: Sequence[float]) -> tuple[float, float]:
    """95% bootstrap interval of the mean over seeds (`runs.bootstrap_ci`)."""
    from jaxrl_suite.runs import bootstrap_ci

    return bootstrap_ci(np.asarray(values, np.float64))


def compare(
    agent: str,
    dataset: str | os.PathLike,
    representations: Sequence[str],
    out_root: str | os.PathLike,
    num_seeds: int = 5,
    preset: str = "cpu",
    progress: bool = True,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run each representation's pipeline into OUT_ROOT/<name> and write OUT_ROOT/table.md (score, 95% CI, probes)."""
    from jaxrl_suite.runs import atomic_write_bytes

    results = [
        run_pipeline(agent, dataset, name, Path(out_root) / name, num_seeds=num_seeds, preset=preset, progress=progress, **overrides)
        for name in representations
    ]
    lines = [
        f"{agent} on {dataset} ({num_seeds} seeds, preset {preset})",
        "",
        "| representation | normalised score (mean) | 95% CI | endo R^2 | exo R^2 |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        probes = r.get("probe") or []
        endo = np.mean([p["endo_r2"] for p in probes]) if probes else float("nan")
        exo = np.mean([p["exo_r2"] for p in probes]) if probes else float("nan")
        low, high = r["normalized_score_ci95"]
        lines.append(f"| {r['representation']} | {r['normalized_score_mean']:.1f} | [{low:.1f}, {high:.1f}] | {endo:.2f} | {exo:.2f} |")
    atomic_write_bytes(Path(out_root) / "table.md", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(Path(out_root) / "results.json", json.dumps(results, indent=2).encode())
    return results

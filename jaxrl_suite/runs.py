"""The host loop and the run directory: train a batch of members chunk by chunk and record everything.

`run(config, out_dir, num_seeds=..., overrides=...)` builds the agent's Trainer, vmaps it over
the members (`config.make_batch`), and between jitted chunks of `update`:
advances a tqdm bar showing the latest mean evaluation return, appends the chunk's evaluation
points to `metrics.csv`, logs TensorBoard scalars and saves an orbax checkpoint of the batched
state. At the end it writes `summary.json` and `plots/learning_curve.png`.

    DIR/config.json       agent name, every config field, seeds, overrides, members
    DIR/provenance.json   package versions, git commit, devices, XLA flags, command line
    DIR/metrics.csv       one row per evaluation point per member
    DIR/summary.json      final returns, their mean with a 95% bootstrap interval, normalised scores
    DIR/plots/            learning curves: each member, and each setting's mean with a 95% band
    DIR/tensorboard/      event files (append-only by nature, the one non-atomic output)
    DIR/checkpoints/<N>/  orbax checkpoints of the batched TrainState after update N

Every JSON/CSV/PNG file is written to a temporary name and renamed into place (atomic on POSIX);
orbax commits each checkpoint by renaming its finished temporary directory. A run found with a
checkpoint in DIR resumes from it, exactly (chunks compose bitwise, see `training`).
`evaluate_run(DIR)` restores the latest checkpoint, re-evaluates every member and writes a video.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from jaxrl_suite import agents, references
from jaxrl_suite.config import TrainConfig, make_batch
from jaxrl_suite.training import BatchedTrainer, batched

PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "distrax", "gymnax", "brax", "orbax-checkpoint", "numpy", "jaxrl_suite")
EVAL_COLUMNS = ("step", "env_steps", "return_mean", "return_std", "episode_length", "diverged")


# ---- atomic files ---------------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (NaN written as null)."""
    atomic_write_bytes(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False).encode())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)) or hasattr(obj, "__array__"):
        return _jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


# ---- provenance ------------------------------------------------------------------------------------


def git_commit(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit hash and whether the working tree is dirty, or None outside a git checkout."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance() -> dict[str, Any]:
    """Where and with what a run was made: versions, commit, devices, XLA flags, command line."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "packages": versions,
        "python": sys.version,
        "platform": platform.platform(),
        "git": git_commit(),
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_flags": {k: v for k, v in os.environ.items() if k.startswith("JAX_")},
        "argv": sys.argv,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---- metrics ---------------------------------------------------------------------------------------


def metric_rows(metrics: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Batched metrics {name: (B, K)} to rows: one per evaluation point per member."""
    host = {k: np.asarray(v) for k, v in metrics.items()}
    num_members, num_points = host["return_mean"].shape
    extra = [k for k in host if k not in EVAL_COLUMNS]
    rows = []
    for m in range(num_members):
        for k in range(num_points):
            row = {"member": m, **{f"member_{n}" if n == "seed" else n: v for n, v in members[m].items()}}
            row.update({c: host[c][m, k].item() for c in EVAL_COLUMNS})
            row["diverged"] = int(row["diverged"])
            row.update({c: host[c][m, k].item() for c in sorted(extra)})
            rows.append(row)
    return rows


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Atomically write rows as CSV with the union of their keys as header (first-seen order)."""
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a metrics.csv as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def bootstrap_ci(values: np.ndarray, num_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over the first axis (members); returns (low, high)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (num_resamples, values.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def _setting_label(member: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in member.items() if k != "seed"]
    return ", ".join(parts) if parts else "all seeds"


def plot_learning_curves(path: str | os.PathLike, metrics: Mapping[str, Any], members: Sequence[Mapping[str, Any]], title: str) -> None:
    """Each member's evaluation return (thin) and each setting's mean with a 95% bootstrap band, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(metrics["env_steps"])[0]
    returns = np.asarray(metrics["return_mean"], np.float64)
    labels = [_setting_label(m) for m in members]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, label in enumerate(dict.fromkeys(labels)):
        color = f"C{i}"
        idx = [j for j, lab in enumerate(labels) if lab == label]
        for j in idx:
            ax.plot(steps, returns[j], color=color, alpha=0.25, lw=0.8)
        band = np.array([bootstrap_ci(returns[idx, k]) for k in range(returns.shape[1])])
        ax.fill_between(steps, band[:, 0], band[:, 1], color=color, alpha=0.25)
        ax.plot(steps, np.nanmean(returns[idx], axis=0), color=color, lw=2, label=f"{label} (n={len(idx)})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


# ---- checkpoints -----------------------------------------------------------------------------------


def _checkpoint_manager(out_dir: Path, max_to_keep: int = 2, cleanup: bool = False):
    import orbax.checkpoint as ocp

    # cleanup: a checkpoint a killed run left uncommitted (orbax's *.orbax-checkpoint-tmp* directory, never
    # restored) is deleted when the writing manager opens; only that one cleans, two would race in rmtree
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=cleanup)
    return ocp.CheckpointManager((out_dir / "checkpoints").resolve(), options=options)


def _checkpoint_leaves(state: Any) -> dict[str, Any]:
    """The state's leaves keyed by position, without zero-size ones (orbax refuses to save those)."""
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(state)) if np.prod(np.shape(leaf)) > 0}


def _state_from_leaves(saved: Mapping[str, Any], abstract: Any) -> Any:
    """Rebuild the state from saved leaves, refilling the zero-size ones from their abstract shapes."""
    leaves, treedef = jax.tree.flatten(abstract)
    full = [saved[f"{i:05d}"] if f"{i:05d}" in saved else jax.numpy.zeros(a.shape, a.dtype) for i, a in enumerate(leaves)]
    return jax.tree.unflatten(treedef, full)


def restore_state(out_dir: str | os.PathLike, trainer: BatchedTrainer, keys: jax.Array, hyper: Any, step: int | None = None):
    """Host (numpy) copy of the batched TrainState saved in `out_dir` (latest, or after update `step`), or (None, None).

    A checkpoint written from devices holds the padded member axis of its mesh (`sharding`); the
    padding is dropped here, so a run resumes on any number of devices.
    """
    import orbax.checkpoint as ocp

    # a reading manager told its handler, so it can report the saved shapes before restoring
    manager = ocp.CheckpointManager((Path(out_dir) / "checkpoints").resolve(), item_handlers=ocp.StandardCheckpointHandler())
    step = manager.latest_step() if step is None else step
    if step is None:
        manager.close()
        return None, None
    abstract = jax.eval_shape(trainer.init, keys, hyper)
    saved_meta = manager.item_metadata(step)
    template = {name: np.zeros(tuple(saved_meta[name].shape), leaf.dtype) for name, leaf in _checkpoint_leaves(abstract).items()}
    saved = manager.restore(step, args=ocp.args.StandardRestore(template))
    manager.close()
    num_members = int(np.shape(keys)[0])
    saved = {name: np.asarray(leaf)[:num_members] for name, leaf in saved.items()}
    return _state_from_leaves(saved, abstract), step


# ---- the host loop ---------------------------------------------------------------------------------


def run(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    num_seeds: int = 1,
    overrides: Sequence[Mapping[str, Any]] | None = None,
    agent: str | None = None,
    progress: bool = True,
    checkpoint: bool = True,
    resume: bool = True,
    devices: str | int | None = None,
    memory_limit_bytes: int | None = None,
    members_per_call: int | None = None,
) -> dict[str, Any]:
    """Train every member, write the run directory, and return the summary dict.

    The member axis is sharded over `devices` ("all" or N per process; default `sharding.select_devices`)
    and split into sequential sub-batches when one call would not fit `memory_limit_bytes` per device
    (default: the device's free memory) or exceeds `members_per_call` (`sharding.plan_batch`). In a
    multi-process run every process calls this; process 0 alone writes the files, and every process
    writes its own shards of the orbax checkpoints (so DIR must be on a filesystem all of them share).
    """
    from jaxrl_suite.sharding import is_main_process, plan_batch

    main = is_main_process()
    agent = agent or agents.agent_name_of(config)
    static, batch = make_batch(config, num_seeds, overrides)
    trainer = batched(agents.make_train(agent, static))  # validates before anything compiles
    out = Path(out_dir)
    record = _jsonable({
        "agent": agent,
        "config": static.to_dict(),
        "num_seeds": num_seeds,
        "overrides": [dict(o) for o in (overrides or [{}])],
        "members": list(batch.members),
    })
    if resume and (out / "config.json").exists() and json.loads((out / "config.json").read_text()) != record:
        raise ValueError(f"{out} holds a run of a different config ({_record_difference(json.loads((out / 'config.json').read_text()), record)}); "
                         "choose a new --out (from Python: or pass resume=False)")
    if jax.process_count() > 1:  # every process has checked DIR before process 0 writes into it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxrl_suite.runs.run: checked {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:  # before anything is written or compiled, named as the output directory
        raise ValueError(f"cannot write the output directory {out}: {err.strerror or err}") from None
    if main:
        atomic_write_json(out / "config.json", record)
        atomic_write_json(out / "provenance.json", provenance())

    manager = _checkpoint_manager(out, cleanup=main) if checkpoint else None
    state, start_chunk, rows = None, 0, []
    if resume and manager is not None and manager.latest_step() is not None and (out / "metrics.csv").exists():
        state, step = restore_state(out, trainer, batch.keys, batch.hyper)
        start_chunk = step // static.updates_per_chunk
        rows = [r for r in _typed_rows(read_csv(out / "metrics.csv")) if r["step"] <= step]
    for stale in [*out.glob(".*.tmp*"), *out.glob("plots/.*.tmp*")] if main else []:  # a killed atomic_write_bytes' leftovers
        stale.unlink()
    t_start = time.perf_counter()
    plan = plan_batch(trainer, batch.keys, batch.hyper, devices=devices, memory_limit_bytes=memory_limit_bytes, members_per_call=members_per_call)
    state = plan.init(batch.keys, batch.hyper) if state is None else plan.load(state)

    from tensorboardX import SummaryWriter
    from tqdm.auto import tqdm

    writer = SummaryWriter(str(out / "tensorboard")) if main else None
    first_chunk_s = None
    bar = tqdm(total=static.num_chunks, initial=start_chunk, disable=not progress, desc=f"{agent} {static.env}", unit="chunk")
    for chunk in range(start_chunk, static.num_chunks):
        t0 = time.perf_counter()
        state, metrics = plan.update(state)  # metrics: host arrays of every member, on every process
        if first_chunk_s is None:
            first_chunk_s = time.perf_counter() - t0
        rows.extend(metric_rows(metrics, batch.members))
        if main:
            write_csv(out / "metrics.csv", rows)
            for k in range(metrics["step"].shape[1]):
                x = int(metrics["env_steps"][0, k])
                for name, value in metrics.items():
                    finite = np.asarray(value[:, k], np.float64)
                    finite = finite[np.isfinite(finite)]
                    if name not in ("step", "env_steps") and finite.size:  # e.g. no training episode ended yet
                        writer.add_scalar(f"{name}/mean", float(finite.mean()), x)
                for m in range(batch.size):
                    writer.add_scalar(f"return_mean/member_{m}", float(metrics["return_mean"][m, k]), x)
            writer.flush()
        if manager is not None:
            import orbax.checkpoint as ocp

            manager.save(int(metrics["step"][0, -1]), args=ocp.args.StandardSave(_checkpoint_leaves(state)))
        bar.set_postfix(ret=f"{np.nanmean(metrics['return_mean'][:, -1]):.1f}", diverged=int(metrics["diverged"][:, -1].sum()))
        bar.update(1)
    bar.close()
    if writer is not None:
        writer.close()
    if manager is not None:
        manager.wait_until_finished()
        manager.close()
    wall_s = time.perf_counter() - t_start

    all_metrics = _metrics_from_rows(rows, batch.size)
    summary = summarise(static, agent, batch.members, all_metrics, wall_s, first_chunk_s)
    summary["layout"] = plan.describe()
    if main:
        atomic_write_json(out / "summary.json", summary)
        plot_learning_curves(out / "plots" / "learning_curve.png", all_metrics, batch.members, f"{agent} on {static.env} ({static.obs}, {static.distractor}/{static.difficulty})")
    return summary


def _record_difference(saved: Mapping[str, Any], record: Mapping[str, Any], limit: int = 4) -> str:
    """The first fields where a run directory's config.json differs from this run's, as 'field: saved there, given here'."""
    def flat(d: Mapping[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in d.items() if k != "config"}, **{f"config.{k}": v for k, v in d.get("config", {}).items()}}

    there, here = flat(saved), flat(record)
    diffs = [f"{k}: {there.get(k)!r} there, {here.get(k)!r} here" for k in dict.fromkeys([*there, *here]) if there.get(k) != here.get(k)]
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def _typed_rows(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV strings back to int, float or str, so that rewriting a row reproduces its text exactly."""
    out = []
    for row in rows:
        typed = {}
        for k, v in row.items():
            # int first: str(int) never has "." or "e", while a float's repr always does (or is nan/inf),
            # so a resumed metrics.csv keeps "0" as "0" (not "0.0") and is bitwise the uninterrupted one
            try:
                typed[k] = int(v)
            except ValueError:
                try:
                    typed[k] = float(v)
                except ValueError:
                    typed[k] = v
        out.append(typed)
    return out


def _metrics_from_rows(rows: Sequence[Mapping[str, Any]], num_members: int) -> dict[str, np.ndarray]:
    """Rows back to {name: (B, K)} arrays (B members in order)."""
    names = [k for k in rows[0] if k in EVAL_COLUMNS or not (k == "member" or k.startswith("member_") or isinstance(rows[0][k], str))]
    per_member = [[r for r in rows if int(r["member"]) == m] for m in range(num_members)]
    return {n: np.array([[float(r[n]) for r in rs] for rs in per_member]) for n in names}


def summarise(config: TrainConfig, agent: str, members, metrics: Mapping[str, np.ndarray], wall_s: float, first_chunk_s: float | None) -> dict[str, Any]:
    """Final returns per member, their mean with a 95% bootstrap interval, normalised scores, timings."""
    final = np.asarray(metrics["return_mean"])[:, -1]
    low, high = bootstrap_ci(final)
    summary: dict[str, Any] = {
        "agent": agent,
        "env": config.env,
        "obs": config.obs,
        "distractor": config.distractor,
        "difficulty": config.difficulty,
        "num_members": len(members),
        "members": list(members),
        "env_steps": int(np.asarray(metrics["env_steps"])[0, -1]),
        "final_return": final.tolist(),
        "final_return_mean": float(np.nanmean(final)),
        "final_return_ci95": [low, high],
        "diverged": np.asarray(metrics["diverged"])[:, -1].astype(bool).tolist(),
        "wall_time_s": wall_s,
        "first_chunk_s (compile + run)": first_chunk_s,
    }
    try:
        summary["final_normalized_score"] = [references.normalized_score(config.env, r, config.action_repeat) for r in final]
    except ValueError as err:
        summary["final_normalized_score"] = None
        summary["normalized_score_note"] = str(err)
    return summary


# ---- reload and evaluate ----------------------------------------------------------------------------


def load_run(out_dir: str | os.PathLike):
    """(agent name, static config, batch, batched trainer) of a run directory, nothing compiled."""
    out = Path(out_dir)
    if not (out / "config.json").exists():
        raise ValueError(f"{out} is not a run directory (no config.json)")
    saved = json.loads((out / "config.json").read_text())
    entry = agents.get(saved["agent"])
    config = entry.config_cls.from_dict(saved["config"])
    static, batch = make_batch(config, saved["num_seeds"], saved["overrides"])
    return saved["agent"], static, batch, batched(entry.make_train(static))


def evaluate_run(out_dir: str | os.PathLike, video: str | None = "policy.mp4", video_member: int = 0, video_steps: int | None = None) -> dict[str, Any]:
    """Restore the latest checkpoint, evaluate every member, write `evaluation.json` and a video of one member."""
    out = Path(out_dir)
    agent, static, batch, trainer = load_run(out)
    state, step = restore_state(out, trainer, batch.keys, batch.hyper)
    if state is None:
        raise ValueError(f"{out} holds no checkpoint to evaluate")
    result = jax.device_get(trainer.evaluate(state))
    rows = [r for r in _typed_rows(read_csv(out / "metrics.csv")) if r["step"] == step] if (out / "metrics.csv").exists() else []
    report = {
        "step": int(step),
        "return_mean": np.asarray(result["return_mean"]).tolist(),
        "return_std": np.asarray(result["return_std"]).tolist(),
        "episode_length": np.asarray(result["episode_length"]).tolist(),
        "recorded_return_mean": [r["return_mean"] for r in sorted(rows, key=lambda r: r["member"])],
    }
    if video:
        report["video"] = write_policy_video(trainer, state, video_member, out / video, video_steps)
    atomic_write_json(out / "evaluation.json", report)
    return report


def write_policy_video(trainer: BatchedTrainer, state: Any, member: int, path: Path, num_steps: int | None = None) -> str | None:
    """Render one member's deterministic policy with its distractor (needs env.render_frame); returns the path or None."""
    base = trainer.trainer
    env, params = base.env, base.env_params
    if not hasattr(env, "render_frame"):
        return None
    from jaxrl_suite.envs.video import render_episode

    member_state = jax.tree.map(lambda x: x[member], state)
    num_steps = num_steps or int(params.max_steps_in_episode)

    def policy(key, obs):
        return base.member_agent(member_state).act(member_state.agent, obs[None], key, True)[0]

    tmp = path.with_name(f".tmp{os.getpid()}-{path.name}")  # suffix kept: it picks the format
    # the member's own distractor params: a difficulty-batched run renders each member at its difficulty
    render_episode(env, base.member_env_params(member_state), policy, jax.random.fold_in(member_state.eval_key, 1), tmp, num_steps=num_steps)
    os.replace(tmp, path)
    return str(path)

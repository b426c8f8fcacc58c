"""Experiment A of the representation issue: which pretrained encoders keep the exogenous distractor?

One fixed dataset of pixel transitions is generated from a distracted env (by default
cartpole-balance at 16 px behind the `hard` twin: a look-alike cartpole in the agent's own
colours, drawn at the same place and pushed by its own time-correlated random actions; a
uniformly random behaviour policy). Every setting then trains the same small CNN encoder on
that dataset with one representation objective of `jaxrl_suite.objectives`, through the
offline pipeline's pretraining (`offline.pretrain`: Adam on uniform minibatches, EMA target),
all seeds of one objective vmapped in one jitted program. Each seed's frozen encoder embeds a
second, held-out set of streams generated with another seed, and ridge probes
(`jaxrl_suite.probe.ridge_probe`) fit on three quarters of those streams predict the `endo`
vector (the agent's cartpole) and the `exo` vector (the twin's state and action) on the other
quarter: held-out R^2, so the score is generalisation to unseen episodes and unseen distractor
trajectories, not interpolation between neighbouring frames.

Settings: `random` (the objective `none`: the encoder at initialisation), reconstruction,
curl, dbc, mico, simsr, acro, and `repdib-simsr` (RepDIB's grouped VQ bottleneck around
SimSR). Reference rows: `oracle` (the endo vector itself as the embedding: endo R^2 = 1, and the
exo R^2 that correlations between the two systems allow) and `pixels` (the raw pixels as the
embedding: what a linear read-out finds in the image itself).

Output in `--out`: `table.csv` and `table.md` (per setting: endo and exo R^2 as IQM and mean
over seeds with 95% stratified-bootstrap intervals from `jaxrl_suite.stats`, the final
pretraining loss, compile and train seconds), `seeds.csv` (one row per setting and seed) and
`results.json` (everything, with per-dimension R^2).

    python -m experiments.representation_probe --preset cpu --seeds 5 --out results/representation_probe-cpu
    python experiments/representation_probe.py --preset tiny --seeds 2

Presets: `tiny` (seconds, for tests), `cpu` (minutes on a 2-core CPU; 16 px), `gpu` (32 px, a
larger dataset and encoder, 20k steps; not yet measured on a GPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_suite import datasets, offline, probe, stats
from jaxrl_suite.objectives import make_objective

# setting name -> (objective name, objective options beyond the shared ones)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("none", {}),
    "reconstruction": ("reconstruction", {}),
    "curl": ("curl", {}),
    "dbc": ("dbc", {}),
    "mico": ("mico", {}),
    "simsr": ("simsr", {}),
    "acro": ("acro", {}),
    "repdib-simsr": ("repdib", {"inner": "simsr"}),
}
REFERENCES = ("oracle", "pixels")
# objectives whose own model heads have an MLP width option (`hidden`)
HEAD_HIDDEN = ("dbc", "acro")
# objectives that augment images by a random shift (`shift_pad`)
SHIFTED = ("curl", "acro")
# objectives with a discount in their bisimulation target
DISCOUNTED = ("dbc", "mico", "simsr")


@dataclasses.dataclass(frozen=True)
class Preset:
    """The data, encoder and training budget of one experiment size."""

    env: str = "cartpole-balance"
    distractor: str = "twin"
    difficulty: str = "hard"
    image_size: int = 16
    action_repeat: int = 4
    train_size: int = 20_000  # transitions the encoders train on
    train_envs: int = 20  # parallel streams of the training data
    probe_size: int = 4_000  # held-out transitions the probes fit and score on
    probe_envs: int = 8  # streams of the probe data (a quarter of them are the probe's test split)
    pretrain_steps: int = 1_000
    batch_size: int = 64
    learning_rate: float = 3e-4
    target_tau: float = 0.01  # EMA rate of the target encoder (curl, mico, simsr)
    gamma: float = 0.99
    latent_dim: int = 32
    cnn_channels: tuple[int, ...] = (8, 16)
    cnn_strides: tuple[int, ...] = (2, 2)
    head_hidden: tuple[int, ...] = (64, 64)
    # channels of the reconstruction decoder's transposed convolutions: XLA's CPU transposed
    # convolution makes reconstruction 4-10x slower per step than the other objectives
    decoder_features: int = 16
    shift_pad: int = 1  # random-shift padding in pixels (DrQ's 4 at 84 px is about 1 at 16 px)
    ridge_l2: float = 1e-3


PRESETS: dict[str, Preset] = {
    # seconds: tests and smoke runs
    "tiny": Preset(
        train_size=256, train_envs=4, probe_size=128, probe_envs=4, pretrain_steps=3, batch_size=8,
        latent_dim=8, cnn_channels=(4,), cnn_strides=(2,), head_hidden=(16,), decoder_features=4,
    ),
    # minutes on a 2-core CPU (see docs/representation_probe.md for the measured time)
    "cpu": Preset(),
    # larger images, data, encoder and budget: meant for one GPU (not yet measured there)
    "gpu": Preset(
        image_size=32, train_size=100_000, train_envs=100, probe_size=10_000, probe_envs=20, pretrain_steps=20_000,
        batch_size=256, latent_dim=64, cnn_channels=(32, 32, 32), cnn_strides=(2, 1, 1), head_hidden=(256, 256), shift_pad=2,
        decoder_features=32,
    ),
}


@dataclasses.dataclass(frozen=True)
class Args:
    """Command line of Experiment A (flags generated by tyro)."""

    preset: Literal["tiny", "cpu", "gpu"] = "cpu"
    seeds: int = 5  # encoders per setting, vmapped in one program
    out: Path | None = None  # default: results/representation_probe-<preset>
    settings: tuple[str, ...] = tuple(SETTINGS)  # a subset of the settings to run
    seed: int = 0  # first seed; the training data uses it, the probe data seed + 1, the encoders seed .. seed + seeds - 1
    pretrain_steps: int | None = None  # override the preset's (e.g. to shrink a run that stalls)
    image_size: int | None = None  # override the preset's
    distractor: str | None = None  # override the preset's (pixel distractors only)
    difficulty: str | None = None  # override the preset's


def resolve(args: Args) -> Preset:
    """The preset with the command line's overrides, every value checked before anything compiles."""
    if args.preset not in PRESETS:
        raise ValueError(f"preset={args.preset!r}; valid: {sorted(PRESETS)}")
    if isinstance(args.seeds, bool) or not isinstance(args.seeds, int) or args.seeds < 1:
        raise ValueError(f"seeds={args.seeds!r} must be a positive integer")
    if isinstance(args.seed, bool) or not isinstance(args.seed, int) or args.seed < 0:
        raise ValueError(f"seed={args.seed!r} must be a non-negative integer")
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown or not args.settings:
        raise ValueError(f"settings={list(args.settings)!r}: unknown {unknown or 'none given'}; valid: {list(SETTINGS)}")
    overrides = {
        name: getattr(args, name) for name in ("pretrain_steps", "image_size", "distractor", "difficulty") if getattr(args, name) is not None
    }
    preset = dataclasses.replace(PRESETS[args.preset], **overrides)
    data_spec(preset, "train", args.seed).validate()
    for name in ("pretrain_steps", "batch_size", "latent_dim", "train_envs", "probe_envs"):
        value = getattr(preset, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if preset.probe_envs < 4:
        raise ValueError(f"probe_envs={preset.probe_envs} must be >= 4: a quarter of the probe streams is the test split")
    return preset


def data_spec(preset: Preset, split: Literal["train", "probe"], seed: int) -> datasets.DatasetSpec:
    """The dataset spec of the training data (seed) or the held-out probe data (seed + 1): random actions, pixels."""
    size, envs = (preset.train_size, preset.train_envs) if split == "train" else (preset.probe_size, preset.probe_envs)
    return datasets.DatasetSpec(
        env=preset.env, obs="pixels", distractor=preset.distractor, difficulty=preset.difficulty, image_size=preset.image_size,
        action_repeat=preset.action_repeat, level="random", size=size, num_envs=envs, chunk_steps=min(250, math.ceil(size / envs)),
        seed=seed if split == "train" else seed + 1,
    )


@dataclasses.dataclass(frozen=True)
class ProbeFeatures(offline.Features):
    """The offline pipeline's features with this experiment's objective options (widths, shift, RepDIB's inner)."""

    objective_name: str = "none"
    objective_options: tuple[tuple[str, Any], ...] = ()

    def objective(self):
        """The setting's objective around the pipeline's encoder."""
        shape = tuple(self.data.frames.shape[1:])
        return make_objective(self.objective_name, self.encoder(), self.config.latent_dim, self.action_dim, False, shape, **dict(self.objective_options))


def objective_options(name: str, extra: dict[str, Any], preset: Preset) -> dict[str, Any]:
    """Options for objective `name` (and RepDIB's inner one): head widths, shift padding, discount."""
    inner = extra.get("inner", name)
    options = dict(extra)
    if inner in HEAD_HIDDEN:
        options["hidden"] = preset.head_hidden
    if inner == "reconstruction":
        options["decoder_features"] = preset.decoder_features
    if inner in SHIFTED:
        options["shift_pad"] = preset.shift_pad
    if inner in DISCOUNTED:
        options["gamma"] = preset.gamma
    return options


def build_features(name: str, dataset_path: Path, preset: Preset) -> ProbeFeatures:
    """Features of the offline pipeline for one setting: the CNN encoder to `latent_dim`, pretrained by its objective."""
    objective, extra = SETTINGS[name]
    pretrained = objective != "none"
    config = offline.config_for_dataset(
        offline.OfflineConfig, dataset_path,
        representation=objective if pretrained else "none", pretrain_steps=preset.pretrain_steps, pretrain_batch_size=preset.batch_size,
        pretrain_learning_rate=preset.learning_rate, pretrain_target_tau=preset.target_tau, latent_dim=preset.latent_dim,
        cnn_channels=preset.cnn_channels, cnn_strides=preset.cnn_strides, cnn_features=preset.latent_dim, shift_pad=preset.shift_pad,
    )
    base = offline.setup(config).features
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(offline.Features)}
    options = objective_options(objective, extra, preset)
    return ProbeFeatures(**fields, objective_name=objective, objective_options=tuple(sorted(options.items())))


def train_encoders(features: ProbeFeatures, keys: jax.Array) -> tuple[Any, np.ndarray, float, float]:
    """(per-seed encoder params, per-seed final loss, compile s, train s): `features.init` vmapped over seeds in one program."""
    program = jax.jit(jax.vmap(features.init))
    start = time.perf_counter()
    compiled = program.lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    params, losses = jax.block_until_ready(compiled(keys))
    train_s = time.perf_counter() - start
    return params, np.asarray(losses, np.float64), compile_s, train_s


def probe_split(num_rows: int, num_streams: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of env-major probe data: the last quarter of the streams is the test split."""
    per_stream = num_rows // num_streams
    num_test = max(1, num_streams // 4)
    cut = (num_streams - num_test) * per_stream
    return np.arange(cut), np.arange(cut, num_rows)


def varying_dims(values: np.ndarray, num_streams: int) -> np.ndarray:
    """Indices of the columns of env-major `values` that change within at least one stream."""
    streams = values[: (values.shape[0] // num_streams) * num_streams].reshape(num_streams, -1, values.shape[1])
    spread = np.max(np.ptp(streams, axis=1), axis=0)
    return np.flatnonzero(spread > 1e-6 * (1.0 + np.max(np.abs(values), axis=0)))


def ridge_scores(z: np.ndarray, endo: np.ndarray, exo: np.ndarray, split: tuple[np.ndarray, np.ndarray], l2: float) -> dict[str, Any]:
    """Held-out ridge R^2 (mean and per dimension) of embeddings z for endo and for exo."""
    train, test = split
    z = np.asarray(z, np.float32).reshape(z.shape[0], -1)
    result = {}
    for target_name, target in (("endo", endo), ("exo", exo)):
        fit = probe.ridge_probe(z[train], target[train], z[test], target[test], l2)
        result[f"{target_name}_r2"] = float(fit["r2"])
        result[f"{target_name}_r2_per_dim"] = [float(v) for v in np.asarray(fit["r2_per_dim"])]
    return result


def interval(values: Sequence[float], seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """IQM and mean over seeds with 95% stratified-bootstrap intervals (one task column)."""
    metrics = {"IQM": stats.METRICS["IQM"], "Mean": stats.METRICS["Mean"]}
    return stats.aggregate(np.asarray(values, np.float64)[:, None], metrics=metrics, seed=seed)


def summarise(name: str, kind: str, per_seed: list[dict[str, Any]], losses: Sequence[float] | None, compile_s: float, train_s: float) -> dict[str, Any]:
    """One table row: IQM and mean [95% CI] of endo and exo R^2 over seeds, loss, seconds."""
    row: dict[str, Any] = {"setting": name, "kind": kind, "seeds": len(per_seed)}
    for target in ("endo", "exo"):
        values = [s[f"{target}_r2"] for s in per_seed]
        for metric, (point, low, high) in interval(values).items():
            prefix = f"{target}_r2_{metric.lower()}"
            row.update({prefix: point, f"{prefix}_low": low, f"{prefix}_high": high})
        row[f"{target}_r2_per_dim_mean"] = np.mean([s[f"{target}_r2_per_dim"] for s in per_seed], axis=0).tolist()
    row["train_loss_final"] = float(np.mean(losses)) if losses is not None else float("nan")
    row["compile_s"], row["train_s"] = compile_s, train_s
    return row


CSV_COLUMNS = (
    "setting", "kind", "seeds",
    "endo_r2_iqm", "endo_r2_iqm_low", "endo_r2_iqm_high", "endo_r2_mean", "endo_r2_mean_low", "endo_r2_mean_high",
    "exo_r2_iqm", "exo_r2_iqm_low", "exo_r2_iqm_high", "exo_r2_mean", "exo_r2_mean_low", "exo_r2_mean_high",
    "train_loss_final", "compile_s", "train_s",
)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The summary rows as CSV text (numbers to 6 significant digits)."""
    def cell(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return "\n".join([",".join(CSV_COLUMNS)] + [",".join(cell(r[c]) for c in CSV_COLUMNS) for r in rows]) + "\n"


def to_markdown(rows: list[dict[str, Any]], header: str, dim_names: Sequence[str] | None = None) -> str:
    """The summary rows as a markdown table under a one-paragraph header, then R^2 per probed dimension."""
    def ci(r, target, metric):
        p = f"{target}_r2_{metric}"
        return f"{r[p]:.3f} [{r[p + '_low']:.3f}, {r[p + '_high']:.3f}]"

    lines = [
        header,
        "",
        "| setting | endo R^2 IQM [95% CI] | endo R^2 mean [95% CI] | exo R^2 IQM [95% CI] | exo R^2 mean [95% CI] | final loss | compile + train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        loss = "-" if r["train_loss_final"] is None or math.isnan(r["train_loss_final"]) else f"{r['train_loss_final']:.4g}"
        seconds = "-" if r["kind"] == "reference" else f"{r['compile_s']:.0f} + {r['train_s']:.0f}"
        lines.append(f"| {r['setting']} | {ci(r, 'endo', 'iqm')} | {ci(r, 'endo', 'mean')} | {ci(r, 'exo', 'iqm')} | {ci(r, 'exo', 'mean')} | {loss} | {seconds} |")
    # per dimension: velocities and the twin's action are not in a single frame, so the mean hides
    # which visible coordinates an encoder kept
    endo_dims, exo_dims = len(rows[0]["endo_r2_per_dim_mean"]), len(rows[0]["exo_r2_per_dim_mean"])
    names = list(dim_names) if dim_names is not None else [f"endo[{i}]" for i in range(endo_dims)] + [f"exo[{i}]" for i in range(exo_dims)]
    if len(names) != endo_dims + exo_dims:
        raise ValueError(f"{len(names)} dimension names for {endo_dims} endo + {exo_dims} exo dimensions")
    lines += [
        "",
        "Held-out R^2 per dimension (mean over seeds):",
        "",
        "| setting | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for r in rows:
        values = r["endo_r2_per_dim_mean"] + r["exo_r2_per_dim_mean"]
        lines.append(f"| {r['setting']} | " + " | ".join("-" if v is None or math.isnan(v) else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def output_dir(args: Args) -> Path:
    """`--out`, or results/representation_probe-<preset> when it is not given."""
    return Path(args.out) if args.out is not None else Path("results") / f"representation_probe-{args.preset}"


def run(args: Args, log=print) -> dict[str, Any]:
    """Generate the data, train and probe every setting, write the tables; returns results.json's content."""
    from jaxrl_suite.runs import atomic_write_bytes, atomic_write_json

    preset = resolve(args)
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    start = time.perf_counter()
    train_path = datasets.save(datasets.generate(data_spec(preset, "train", args.seed)), out / "data" / "train")
    probe_data = datasets.generate(data_spec(preset, "probe", args.seed))
    data_s = time.perf_counter() - start
    obs = jnp.asarray(probe_data.observations)
    endo = np.asarray(probe_data.arrays["endo"], np.float32)
    exo = np.asarray(probe_data.arrays["exo"], np.float32)
    split = probe_split(probe_data.size, preset.probe_envs)
    # dimensions fixed for a whole stream (the shapes' colours) take one value per stream: a few
    # test streams give them almost no variance, so their R^2 measures nothing; they are dropped
    endo_kept, exo_kept = varying_dims(endo, preset.probe_envs), varying_dims(exo, preset.probe_envs)
    endo, exo = endo[:, endo_kept], exo[:, exo_kept]
    log(f"data: {datasets.read_meta(train_path)['size']} training and {probe_data.size} probe transitions of "
        f"{preset.env} pixels {preset.image_size}px, {preset.distractor}/{preset.difficulty}, random actions ({data_s:.0f} s)")

    rows: list[dict[str, Any]] = []
    seed_rows: list[dict[str, Any]] = []
    for name, z in (("oracle", endo), ("pixels", np.asarray(probe_data.observations, np.float32))):
        scores = ridge_scores(z, endo, exo, split, preset.ridge_l2)
        rows.append(summarise(name, "reference", [scores], None, 0.0, 0.0))
        seed_rows.append({"setting": name, "seed": "-", **scores})
        log(f"{name}: endo R^2 {scores['endo_r2']:.3f}, exo R^2 {scores['exo_r2']:.3f}")

    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(args.seed, args.seed + args.seeds))
    for name in args.settings:
        features = build_features(name, train_path, preset)
        params, losses, compile_s, train_s = train_encoders(features, keys)
        embed = jax.jit(jax.vmap(lambda p: features(p, obs)))
        embeddings = np.asarray(embed(params))
        per_seed = [ridge_scores(embeddings[i], endo, exo, split, preset.ridge_l2) for i in range(args.seeds)]
        trained = SETTINGS[name][0] != "none"
        rows.append(summarise(name, "trained" if trained else "untrained", per_seed, losses if trained else None, compile_s, train_s))
        for i, scores in enumerate(per_seed):
            seed_rows.append({"setting": name, "seed": args.seed + i, "train_loss_final": float(losses[i]) if trained else None, **scores})
        r = rows[-1]
        log(f"{name}: endo R^2 {r['endo_r2_mean']:.3f}, exo R^2 {r['exo_r2_mean']:.3f}, loss {r['train_loss_final']:.4g} "
            f"(compile {compile_s:.0f} s, train {train_s:.0f} s)")

    total_s = time.perf_counter() - started
    header = (
        f"Experiment A, preset `{args.preset}`: {args.seeds} seeds per setting; {preset.env} pixels {preset.image_size}px with the "
        f"`{preset.distractor}` distractor at `{preset.difficulty}`; {preset.train_size} random-action training transitions, "
        f"{preset.pretrain_steps} pretraining steps of batch {preset.batch_size}; ridge probes (l2 {preset.ridge_l2}) fit on "
        f"{len(split[0])} and scored on {len(split[1])} held-out transitions from unseen streams; probed dimensions: "
        f"endo {endo_kept.tolist()}, exo {exo_kept.tolist()} (the others are constant within streams). Total {total_s:.0f} s."
    )
    results = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(args).items()},
        "preset": dataclasses.asdict(preset),
        "endo_dims": int(endo.shape[1]),
        "exo_dims": int(exo.shape[1]),
        "endo_kept": endo_kept.tolist(),  # indices into the env's endo vector (the others are constant within streams)
        "exo_kept": exo_kept.tolist(),
        "data_s": data_s,
        "total_s": total_s,
        "rows": rows,
        "seeds": seed_rows,
    }
    atomic_write_bytes(out / "table.csv", to_csv(rows).encode())
    dim_names = [f"endo[{i}]" for i in endo_kept] + [f"exo[{i}]" for i in exo_kept]
    atomic_write_bytes(out / "table.md", to_markdown(rows, header, dim_names).encode())
    seed_columns = ("setting", "seed", "endo_r2", "exo_r2", "train_loss_final")
    seed_csv = [",".join(seed_columns)] + [",".join("" if s.get(c) is None else (f"{s[c]:.6g}" if isinstance(s[c], float) else str(s[c])) for c in seed_columns) for s in seed_rows]
    atomic_write_bytes(out / "seeds.csv", ("\n".join(seed_csv) + "\n").encode())
    atomic_write_json(out / "results.json", results)
    log(f"wrote {out}/table.md, table.csv, seeds.csv, results.json ({total_s:.0f} s in all)")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the flags (tyro, from `Args`) and run the experiment."""
    import tyro

    args = tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])
    run(args)
    print((output_dir(args) / "table.md").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])

"""Named benchmark experiments: load and validate a TOML file, expand it into runs, run them, write results.

An experiment file (see experiments/README.md for the whole format) names a grid of
agents x envs x observation modes x distractors x difficulties, the seeds, and per agent a
preset, config overrides and the sweepable fields to sweep:

    name = "quickstart"
    seeds = 8
    [[grid]]
    agents = ["ppo"]
    envs = ["cartpole-balance"]
    obs = ["state"]
    distractors = ["none", "noise", "twin"]
    difficulties = ["hard"]
    [agents.ppo]
    preset = "cartpole-cpu"
    config = { num_updates = 150 }
    sweep = { learning_rate = [1e-3, 2e-3] }

Expansion: every grid point but the difficulty is one run with one static config; the run's
batch axis is difficulties x sweep settings x seeds (`config.make_batch`, difficulty as a
per-member override carrying that member's distractor params), so it is one compiled program,
trained by `runs.run` into `OUT/runs/<run name>/`. Runs differing in anything static (agent,
env, obs, distractor type, image size, widths) are separate compilations.

Generalisation: `difficulties` may also name the splits "train" / "test" (each member's
distractor params drawn once from that split's ranges), and a grid's `eval_difficulties` makes
the runner restore each run's final state and evaluate every member again under each listed
preset or split; those evaluations are extra rows of results.csv whose `eval_on` column names
the target (the rows of the training run itself have an empty `eval_on`).

Offline grids: a `[datasets.NAME]` table describes a dataset (the fields of
`datasets.DatasetSpec`), and a grid with `datasets` (and `representations`, the names of
`pretrain.REPRESENTATIONS`, default "raw") instead of envs runs every dataset x offline agent x
representation as one run whose batch axis is the seeds (x sweep settings). The runner generates
each dataset once into `OUT/datasets/NAME.npz` (a file already there, made from the same table and
sha-verified by `datasets.load`, is reused on resume); offline agents take `pretrain.PRESETS`
(cpu, gpu, tiny) as their presets. Their rows carry `dataset` and `representation` columns, the
normalised score of `datasets.normalized_score` (as a fraction, like the online rows), and the
final rows the frozen encoders' probe R^2 (`pretrain.probe_members`: `probe_endo_r2`,
`probe_exo_r2`) when the experiment checkpoints.

Everything is validated before anything compiles: an unknown key, a wrong type, an unknown
agent / env / distractor / preset / config field / dataset field / representation, a
non-sweepable sweep field, or a config that fails its own `validate()` raises a ValueError
naming the file, the key and the valid choices.
After the runs, `OUT/results.csv` holds one tidy row per run, seed and evaluation point, and
`report.build_report(OUT)` writes the table, plots and report.md from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from jaxrl_suite import agents, references
from jaxrl_suite.config import TrainConfig, make_batch, sweepable_fields

TOP_KEYS = ("name", "description", "seeds", "seed", "checkpoint", "grid", "agents", "datasets")
GRID_KEYS = ("agents", "envs", "obs", "distractors", "difficulties", "eval_difficulties", "image_size", "datasets", "representations")
# an offline grid takes its env, observation mode and distractor from its datasets
ONLINE_ONLY_GRID_KEYS = ("envs", "obs", "distractors", "difficulties", "eval_difficulties", "image_size")
AGENT_KEYS = ("preset", "config", "sweep")
# set by the grid or the top level, never through an agent's `config` table
GRID_FIELDS = ("env", "obs", "distractor", "difficulty", "image_size", "seed", "dataset", "representation")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESULT_COLUMNS = (
    "experiment", "run", "agent", "env", "obs", "distractor", "difficulty", "image_size", "action_repeat", "setting",
    "seed", "step", "env_steps", "return_mean", "return_std", "normalized_score", "diverged", "eval_on",
)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One compiled program: an agent, its static config, and the sweep settings batched with the seeds."""

    name: str
    agent: str
    config: TrainConfig
    overrides: tuple[dict[str, Any], ...]  # per member setting: sweep values, and `difficulty` when batched
    eval_difficulties: tuple[str, ...] = ()  # presets / splits the final state is evaluated under afterwards
    variant: dict[str, Any] = dataclasses.field(default_factory=dict)  # swept static fields (already in config)
    dataset: str = ""  # offline runs: the name of the [datasets.NAME] table it trains on
    representation: str = ""  # offline runs: the pretrain.REPRESENTATIONS setting

    @property
    def difficulties(self) -> tuple[str, ...]:
        """The difficulties this run trains at, in member order."""
        return tuple(dict.fromkeys(o.get("difficulty", self.config.difficulty) for o in self.overrides))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A validated, expanded experiment file."""

    name: str
    description: str
    path: str
    seeds: int
    checkpoint: bool
    runs: tuple[RunSpec, ...]
    source: dict[str, Any]  # the file's table after --set, as run
    datasets: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> datasets.DatasetSpec used by a run


class ExperimentError(ValueError):
    """A bad experiment file: the message names the file, the key and the valid choices."""


# ---- parsing and validation ------------------------------------------------------------------------


def _fail(path: str, key: str, message: str) -> None:
    raise ExperimentError(f"{path}: key {key!r}: {message}")


def _check_keys(path: str, where: str, table: Any, valid: Sequence[str]) -> None:
    if not isinstance(table, dict):
        _fail(path, where, f"must be a table, got {type(table).__name__} {table!r}")
    for key in table:
        if key not in valid:
            _fail(path, f"{where}.{key}" if where else key, f"unknown key; valid: {list(valid)}")


def _string_list(path: str, key: str, value: Any, valid: Sequence[str] | None = None) -> list[str]:
    """A string or a non-empty list of strings, each checked against `valid` when given."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        _fail(path, key, f"must be a string or a non-empty list of strings, got {value!r}")
    if valid is not None:
        for v in values:
            if v not in valid:
                _fail(path, key, f"unknown value {v!r}; valid: {list(valid)}")
    return values


def _typed_value(path: str, key: str, value: Any, default: Any) -> Any:
    """`value` checked (and converted) against the type of a config field's default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):
        kind = type(default[0]) if default else int
        ok = isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        expected = f"list of {type(default[0]).__name__}" if isinstance(default, tuple) and default else type(default).__name__
        _fail(path, key, f"must be of type {expected} (like the default {default!r}), got {type(value).__name__} {value!r}")
    return value


def _valid_envs() -> list[str]:
    from jaxrl_suite.envs import TASKS, list_envs

    return sorted(TASKS) + list_envs()


def _check_env(path: str, key: str, name: str) -> None:
    if name.startswith("gymnax:"):
        return  # checked with the whole run config by rollout.make_env
    if name not in _valid_envs():
        _fail(path, key, f"unknown env {name!r}; valid: {sorted(_valid_envs())} or 'gymnax:<id>'")


def _agent_table(path: str, name: str, table: Mapping[str, Any]) -> tuple[TrainConfig, list[dict[str, Any]], list[dict[str, Any]]]:
    """The agent's base config (preset + overrides), its batched sweep settings and its static variants.

    A sweep over a sweepable field is batched with the seeds; a sweep over any other config field
    (an objective, a network width) changes the program, so each of its values is a separate run
    (a *variant*), labelled with that value.
    """
    where = f"agents.{name}"
    _check_keys(path, where, table, AGENT_KEYS)
    entry = agents.get(name)
    presets = dict(entry.presets)
    if _is_offline(name):  # the offline agents' budgets are the two-stage pipeline's presets (one place: pretrain.py)
        from jaxrl_suite import pretrain

        presets.update({p: pretrain.preset_config(entry.config_cls, p) for p in pretrain.PRESETS})
    preset = table.get("preset")
    if preset is not None:
        if not isinstance(preset, str) or preset not in presets:
            _fail(path, f"{where}.preset", f"unknown preset {preset!r} for agent {name!r}; valid: {sorted(presets)}")
        base = presets[preset]
    else:
        base = entry.config_cls()
    defaults = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    settable = sorted(set(defaults) - set(GRID_FIELDS))
    overrides = {}
    config_table = table.get("config", {})
    if not isinstance(config_table, dict):
        _fail(path, f"{where}.config", f"must be a table of config fields, got {config_table!r}")
    for field, value in config_table.items():
        key = f"{where}.config.{field}"
        if field in GRID_FIELDS:
            _fail(path, key, f"is set by the grid or the top level, not by an agent's config; settable: {settable}")
        if field not in defaults:
            _fail(path, key, f"unknown field of {entry.config_cls.__name__}; valid: {settable}")
        overrides[field] = _typed_value(path, key, value, defaults[field])
    base = dataclasses.replace(base, **overrides)
    sweep_table = table.get("sweep", {})
    if not isinstance(sweep_table, dict):
        _fail(path, f"{where}.sweep", f"must be a table of field = [values], got {sweep_table!r}")
    sweepable = list(sweepable_fields(entry.config_cls))
    axes, static_axes = [], []
    for field, values in sweep_table.items():
        key = f"{where}.sweep.{field}"
        if field in GRID_FIELDS:
            _fail(path, key, f"is set by the grid or the top level, not swept per agent; sweepable: {sweepable}, static: {settable}")
        if field not in defaults:
            _fail(path, key, f"unknown field of {entry.config_cls.__name__}; sweepable (batched): {sweepable}, static (one run each): {settable}")
        if not isinstance(values, list) or not values:
            _fail(path, key, f"must be a non-empty list of values, got {values!r}")
        axis = [(field, _typed_value(path, key, v, defaults[field])) for v in values]
        (axes if field in sweepable else static_axes).append(axis)
    settings = [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]
    variants = [dict(combo) for combo in itertools.product(*static_axes)] if static_axes else [{}]
    return base, settings, variants


def _is_offline(agent: str) -> bool:
    """Whether a registered agent learns from a dataset (its config is an `offline.OfflineConfig`)."""
    from jaxrl_suite.offline import OfflineConfig

    return issubclass(agents.get(agent).config_cls, OfflineConfig)


def offline_agents() -> list[str]:
    """The registered agents that learn from a dataset."""
    return [a for a in agents.list_agents() if _is_offline(a)]


def _dataset_tables(path: str, tables: Any) -> dict[str, Any]:
    """The [datasets.NAME] tables as validated `datasets.DatasetSpec`s (nothing is generated here)."""
    from jaxrl_suite import datasets

    if not isinstance(tables, dict):
        _fail(path, "datasets", f"must be a table of [datasets.NAME] tables, got {tables!r}")
    fields = [f.name for f in dataclasses.fields(datasets.DatasetSpec)]
    defaults = datasets.DatasetSpec()
    specs = {}
    for name, table in tables.items():
        where = f"datasets.{name}"
        if not DATASET_NAME.match(name):
            _fail(path, where, "a dataset name is a file name: letters, digits, '_', '.', '-' (not starting with '.', '_' or '-')")
        _check_keys(path, where, table, fields)
        values = {k: _typed_value(path, f"{where}.{k}", v, getattr(defaults, k)) for k, v in table.items()}
        spec = datasets.DatasetSpec(**values)
        try:
            spec.validate()
        except ValueError as err:
            _fail(path, where, str(err))
        specs[name] = spec
    return specs


def dataset_path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where the runner keeps the dataset NAME of an experiment: OUT/datasets/NAME.npz (sidecar NAME.json beside it)."""
    return Path(out_dir) / "datasets" / f"{name}.npz"


def _offline_runs(
    path: str, where: str, grid: Mapping[str, Any], grid_agents: Sequence[str], specs: Mapping[str, Any],
    bases: Mapping[str, tuple[TrainConfig, list[dict[str, Any]], list[dict[str, Any]]]], num_seeds: int, first_seed: int,
) -> list[RunSpec]:
    """The runs of an offline grid: dataset x agent x static variant x representation, seeds (x sweep settings) batched."""
    from jaxrl_suite import pretrain
    from jaxrl_suite.rollout import make_env

    for key in ONLINE_ONLY_GRID_KEYS:
        if key in grid:
            _fail(path, f"{where}.{key}", "an offline grid (one with `datasets`) takes env, obs, distractor, difficulty and image size "
                  f"from its [datasets.NAME] tables; remove it (offline grid keys: ['agents', 'datasets', 'representations'])")
    names = _string_list(path, f"{where}.datasets", grid["datasets"], sorted(specs))
    representations = _string_list(path, f"{where}.representations", grid.get("representations", "raw"), list(pretrain.REPRESENTATIONS))
    for agent_name in grid_agents:
        if not _is_offline(agent_name):
            _fail(path, f"{where}.agents", f"{agent_name!r} is not an offline agent and cannot train on datasets; valid: {offline_agents()}")
        for representation in representations:
            if representation != "raw" and agent_name not in pretrain.AGENTS:
                _fail(path, f"{where}.representations", f"{representation!r} is a two-stage pipeline for {list(pretrain.AGENTS)}, "
                      f"not {agent_name!r}; with {agent_name!r} use ['raw']")
    runs = []
    for name, agent_name in itertools.product(names, grid_agents):
        spec = specs[name]
        base, settings, variants = bases[agent_name]
        env_fields = {f: getattr(spec, f) for f in ("env", "obs", "distractor", "difficulty", "image_size", "action_repeat")}
        for variant, representation in itertools.product(variants, representations):
            # the path relative to OUT: the runner resolves it once it knows OUT (`dataset_path`)
            fields = {**env_fields, "dataset": f"datasets/{name}.npz", "seed": first_seed}
            config = dataclasses.replace(base, **variant, **pretrain.REPRESENTATIONS[representation], **fields)
            static = "".join(f"_{k}={_compact(v)}" for k, v in variant.items())
            run_name = f"{agent_name}{static}_{name}_{representation}"
            try:
                make_batch(config, num_seeds, settings)  # config.validate(), every member's
                make_env(config)  # the dataset's env, obs and distractor fit together
            except ValueError as err:
                _fail(path, where, f"run {run_name} ({agent_name} on dataset {name}, representation {representation}): {err}")
            runs.append(RunSpec(run_name, agent_name, config, tuple(settings), (), dict(variant), name, representation))
    return runs


def _run_name(agent: str, config: TrainConfig, difficulties: Sequence[str], variant: Mapping[str, Any]) -> str:
    pixels = f"-{config.image_size}px" if config.obs == "pixels" else ""
    env = config.env.replace(":", "-")
    static = "".join(f"_{k}={_compact(v)}" for k, v in variant.items())
    return f"{agent}{static}_{env}_{config.obs}{pixels}_{config.distractor}-{'-'.join(difficulties)}"


def _compact(value: Any) -> str:
    """A value as a directory-name fragment: tuples as 64x64, no spaces."""
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value).replace(" ", "")


def parse_set(spec: str) -> tuple[list[str], Any]:
    """'a.b.0.c=value' -> (['a', 'b', '0', 'c'], value parsed as a TOML value, else the raw string)."""
    key, sep, raw = spec.partition("=")
    if not sep or not key.strip():
        raise ExperimentError(f"--set {spec!r} must look like key=value (dotted keys, e.g. agents.ppo.config.num_updates=30)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_sets(table: dict[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """A copy of the experiment table with each `--set key=value` applied (missing tables are created)."""
    table = json.loads(json.dumps(table))
    for spec in sets:
        parts, value = parse_set(spec)
        node: Any = table
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ExperimentError(f"--set {spec!r}: {part!r} is not an index of a list of {len(node)}")
                node = node[int(part)]
            else:
                node = node.setdefault(part, [] if nxt.isdigit() else {})
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ExperimentError(f"--set {spec!r}: {last!r} is not an index of a list of {len(node)}")
            node[int(last)] = value
        else:
            node[last] = value
    return table


def load_experiment(path: str | os.PathLike, seeds: int | None = None, sets: Sequence[str] = ()) -> Experiment:
    """Read, validate and expand an experiment file; nothing compiles here."""
    path = str(path)
    if not os.path.isfile(path):
        raise ExperimentError(f"{path}: no such experiment file")
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path}: not valid TOML: {err}") from None
    table = apply_sets(table, sets)
    if seeds is not None:
        table["seeds"] = seeds
    return expand(table, path)


def expand(table: Mapping[str, Any], path: str = "<experiment>") -> Experiment:
    """Validate an experiment table and expand its grid into deduplicated runs."""
    table = dict(table)
    _check_keys(path, "", table, TOP_KEYS)
    name = table.get("name", Path(path).stem)
    description = table.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            _fail(path, key, f"must be a string, got {value!r}")
    num_seeds = table.get("seeds", 1)
    first_seed = table.get("seed", 0)
    for key, value, low in (("seeds", num_seeds, 1), ("seed", first_seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            _fail(path, key, f"must be an integer >= {low}, got {value!r}")
    checkpoint = table.get("checkpoint", True)
    if not isinstance(checkpoint, bool):
        _fail(path, "checkpoint", f"must be true or false, got {checkpoint!r}")

    agent_tables = table.get("agents", {})
    if not isinstance(agent_tables, dict):
        _fail(path, "agents", f"must be a table of [agents.NAME] tables, got {agent_tables!r}")
    for agent_name in agent_tables:
        if agent_name not in agents.list_agents():
            _fail(path, f"agents.{agent_name}", f"unknown agent; valid: {agents.list_agents()}")
    specs = _dataset_tables(path, table.get("datasets", {}))

    grids = table.get("grid")
    if grids is None:
        _fail(path, "grid", "is missing: add at least one [[grid]] table naming agents, envs, obs and distractors")
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not grids:
        _fail(path, "grid", f"must be a [[grid]] array of tables, got {grids!r}")

    from jaxrl_suite.config import SPLITS
    from jaxrl_suite.envs.core import OBS_MODES
    from jaxrl_suite.envs.registry import DIFFICULTIES, DISTRACTORS
    from jaxrl_suite.rollout import make_env

    bases: dict[str, tuple[TrainConfig, list[dict[str, Any]], list[dict[str, Any]]]] = {}
    runs: dict[str, RunSpec] = {}
    for g, grid in enumerate(grids):
        where = f"grid[{g}]"
        _check_keys(path, where, grid, GRID_KEYS)
        if "agents" not in grid:
            _fail(path, f"{where}.agents", "is missing")
        grid_agents = _string_list(path, f"{where}.agents", grid["agents"], agents.list_agents())
        if "datasets" in grid:
            for agent_name in grid_agents:
                if agent_name not in bases and _is_offline(agent_name):
                    bases[agent_name] = _agent_table(path, agent_name, agent_tables.get(agent_name, {}))
            for spec in _offline_runs(path, where, grid, grid_agents, specs, bases, num_seeds, first_seed):
                runs.setdefault(spec.name, spec)
            continue
        if "representations" in grid:
            _fail(path, f"{where}.representations", "pretrained representations need datasets: add `datasets = [...]` "
                  f"naming [datasets.NAME] tables (defined: {sorted(specs)})")
        if "envs" not in grid:
            _fail(path, f"{where}.envs", "is missing (or give `datasets` for an offline grid)")
        for agent_name in grid_agents:
            if _is_offline(agent_name):
                _fail(path, f"{where}.agents", f"{agent_name!r} is an offline agent: give this grid `datasets` naming "
                      f"[datasets.NAME] tables (defined: {sorted(specs)}) instead of envs")
        envs = _string_list(path, f"{where}.envs", grid["envs"])
        for e in envs:
            _check_env(path, f"{where}.envs", e)
        obs_modes = _string_list(path, f"{where}.obs", grid.get("obs", "state"), OBS_MODES)
        distractors = _string_list(path, f"{where}.distractors", grid.get("distractors", "none"), sorted(DISTRACTORS))
        difficulties = _string_list(path, f"{where}.difficulties", grid.get("difficulties", "hard"), list(DIFFICULTIES) + list(SPLITS))
        eval_difficulties = grid.get("eval_difficulties", [])
        if eval_difficulties != []:
            eval_difficulties = _string_list(path, f"{where}.eval_difficulties", eval_difficulties, list(DIFFICULTIES) + list(SPLITS))
            if not checkpoint:
                _fail(path, f"{where}.eval_difficulties", "evaluates each run's final checkpoint: needs checkpoint = true")
        image_size = grid.get("image_size")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8):
            _fail(path, f"{where}.image_size", f"must be an integer >= 8, got {image_size!r}")
        for agent_name in grid_agents:
            if agent_name not in bases:
                bases[agent_name] = _agent_table(path, agent_name, agent_tables.get(agent_name, {}))
            base, settings, variants = bases[agent_name]
            for variant, env, obs, distractor in itertools.product(variants, envs, obs_modes, distractors):
                # a run without distractor has nothing to make hard: one run, labelled difficulty "none"
                group = ["none"] if distractor == "none" else difficulties
                # difficulties of one distractor type share every shape: one run, difficulty a batch axis;
                # a lone preset stays static config, a split always draws per member around "medium"
                batched_difficulty = len(group) > 1 or group[0] in SPLITS
                static_difficulty = "medium" if batched_difficulty else group[0]
                fields = {"env": env, "obs": obs, "distractor": distractor, "difficulty": static_difficulty, "seed": first_seed}
                if image_size is not None:
                    fields["image_size"] = image_size
                config = dataclasses.replace(base, **variant, **fields)
                run_name = _run_name(agent_name, config, group, variant)
                if run_name in runs:
                    continue
                members = [{"difficulty": d, **s} for d in group for s in settings] if batched_difficulty else list(settings)
                targets = tuple(eval_difficulties) if distractor != "none" else ()
                try:
                    make_batch(config, num_seeds, members)  # config.validate(), every member's, and their distractor params
                    make_env(config)  # env, obs and distractor fit together
                    for target in targets:
                        make_batch(config, 1, [{"difficulty": target}])
                except ValueError as err:
                    _fail(path, where, f"run {run_name} ({agent_name} on {env}, obs={obs}, distractor={distractor}/{'+'.join(group)}): {err}")
                runs[run_name] = RunSpec(run_name, agent_name, config, tuple(members), targets, dict(variant))
    used = {r.dataset for r in runs.values() if r.dataset}
    return Experiment(
        name=name, description=description, path=path, seeds=num_seeds, checkpoint=checkpoint,
        runs=tuple(runs.values()), source=json.loads(json.dumps(table)), datasets={n: s for n, s in specs.items() if n in used},
    )


# ---- running and collecting ------------------------------------------------------------------------


def setting_label(setting: Mapping[str, Any]) -> str:
    """'objective=dbc, learning_rate=0.001' for a run's swept values ('' for the config as is)."""
    return ", ".join(f"{k}={_cell(v)}" for k, v in setting.items())


def _cell(value: Any) -> Any:
    """A swept value as a CSV cell: tuples (network sizes) as '64x64'."""
    return _compact(value) if isinstance(value, (tuple, list)) else value


def run_rows(experiment_name: str, spec: RunSpec, run_dir: str | os.PathLike, probes: Sequence[Mapping[str, float]] = ()) -> list[dict[str, Any]]:
    """Tidy results rows of one finished run directory (one per member and evaluation point).

    Offline runs label their setting with the dataset and the representation (so runs on two
    datasets of one env stay apart) and add `dataset` / `representation` columns; `probes`, one
    {endo_r2, exo_r2} per member (`pretrain.probe_members`), fill `probe_endo_r2` / `probe_exo_r2`
    of each member's final row.
    """
    from jaxrl_suite.runs import read_csv

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    members = saved["members"]
    config = spec.config
    swept = sorted(({k for s in spec.overrides for k in s} | set(spec.variant)) - {"difficulty"})
    offline = {"dataset": spec.dataset, "representation": spec.representation} if spec.dataset else {}
    metrics = read_csv(run_dir / "metrics.csv")
    last_step = max((int(r["step"]) for r in metrics), default=0)
    rows = []
    for row in metrics:
        member = members[int(row["member"])]
        setting = {**offline, **spec.variant, **{k: v for k, v in member.items() if k not in ("seed", "difficulty")}}
        ret = float(row["return_mean"])
        score = _offline_score(config, ret) if offline else _normalized_score(config, ret)
        out = {
            "experiment": experiment_name, "run": spec.name, "agent": spec.agent, "env": config.env, "obs": config.obs,
            "distractor": config.distractor, "difficulty": member.get("difficulty", config.difficulty), "image_size": config.image_size,
            "action_repeat": config.action_repeat, "setting": setting_label(setting), "seed": int(member["seed"]),
            "step": int(row["step"]), "env_steps": int(row["env_steps"]), "return_mean": ret,
            "return_std": float(row["return_std"]), "normalized_score": score, "diverged": int(row["diverged"]), "eval_on": "",
        }
        out.update(offline)
        out.update({k: _cell(setting.get(k, getattr(config, k))) for k in swept})
        out.update({k: float(v) for k, v in row.items() if k.startswith("probe")})
        if probes and int(row["step"]) == last_step:
            probe = probes[int(row["member"])]
            out.update(probe_endo_r2=float(probe["endo_r2"]), probe_exo_r2=float(probe["exo_r2"]))
        rows.append(out)
    return rows


def _offline_score(config: TrainConfig, ret: float) -> float:
    """`datasets.normalized_score` (the offline issue's 100 * ...) as a fraction, the scale of every results.csv row."""
    from jaxrl_suite import datasets

    return float(datasets.normalized_score(config.env, ret, config.action_repeat)) / 100.0


def _normalized_score(config: TrainConfig, ret: float) -> float:
    try:
        return references.normalized_score(config.env, ret, config.action_repeat)
    except ValueError:
        return float("nan")  # no reference for this task: raw returns only


def generalisation_rows(experiment_name: str, spec: RunSpec, run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Evaluate every member's final state under each of the run's `eval_difficulties`; one row per member and target.

    The final state is the run's last checkpoint; only the member's distractor params change, so
    the evaluation key (a function of the state) is the one of its last in-training evaluation
    and a target equal to the member's own params reproduces that evaluation.
    """
    if not spec.eval_difficulties:
        return []
    import jax
    import jax.numpy as jnp

    from jaxrl_suite.config import DISTRACTOR_PARAMS, difficulty_params
    from jaxrl_suite.runs import load_run, restore_state

    run_dir = Path(run_dir)
    _, static, batch, trainer = load_run(run_dir)
    state, step = restore_state(run_dir, trainer, batch.keys, batch.hyper)
    if state is None:
        raise ValueError(f"{run_dir} holds no checkpoint: eval_difficulties needs the experiment's checkpoint = true")
    own = state.hyper[DISTRACTOR_PARAMS]
    draws = difficulty_params(static, spec.eval_difficulties)
    config = spec.config
    swept = sorted(({k for s in spec.overrides for k in s} | set(spec.variant)) - {"difficulty"})
    env_steps = int(step) * trainer.trainer.env_steps_per_update
    rows = []
    for target in spec.eval_difficulties:
        params = [draws[target](int(m["seed"])) for m in batch.members]
        # same leaf dtypes as the trained members' params: one compiled evaluation for every target
        stacked = jax.tree.map(lambda ref, *xs: jnp.stack(xs).astype(ref.dtype), own, *params)
        result = jax.device_get(trainer.evaluate(state.replace(hyper={**state.hyper, DISTRACTOR_PARAMS: stacked})))
        diverged = np.asarray(jax.device_get(state.diverged))
        for m, member in enumerate(batch.members):
            setting = {**spec.variant, **{k: v for k, v in member.items() if k not in ("seed", "difficulty")}}
            ret = float(result["return_mean"][m])
            out = {
                "experiment": experiment_name, "run": spec.name, "agent": spec.agent, "env": config.env, "obs": config.obs,
                "distractor": config.distractor, "difficulty": member.get("difficulty", config.difficulty),
                "image_size": config.image_size, "action_repeat": config.action_repeat, "setting": setting_label(setting),
                "seed": int(member["seed"]), "step": int(step), "env_steps": env_steps, "return_mean": ret,
                "return_std": float(result["return_std"][m]), "normalized_score": _normalized_score(config, ret),
                "diverged": int(diverged[m]), "eval_on": target,
            }
            out.update({k: _cell(setting.get(k, getattr(config, k))) for k in swept})
            rows.append(out)
    return rows


def prepare_datasets(experiment: Experiment, out_dir: str | os.PathLike, progress: bool = True) -> dict[str, Path]:
    """Generate every dataset the experiment's runs use into OUT/datasets/ once; reuse verified ones on resume.

    NAME.spec.json (the [datasets.NAME] table as generated) is written before NAME.npz: an existing
    npz is reused only when it was made from the same table and `datasets.load` verifies it (sha256,
    keys, shapes); a different table or a damaged file is refused, naming it, and nothing is
    overwritten. Datasets sharing a behaviour run (env, action repeat, seed, PPO budget) train it once.
    """
    from jaxrl_suite import datasets
    from jaxrl_suite.runs import atomic_write_json

    paths, behaviours = {}, {}
    for name, spec in experiment.datasets.items():
        npz = dataset_path(out_dir, name)
        record = dataclasses.asdict(spec)
        spec_file = npz.with_name(f"{name}.spec.json")
        paths[name] = npz
        if spec_file.exists() and json.loads(spec_file.read_text()) != record:
            raise ValueError(f"{spec_file} records a different [datasets.{name}] table than {experiment.path}; "
                             f"choose a new --out or delete {npz.parent}/{name}.*")
        if npz.exists():
            if not spec_file.exists():
                raise ValueError(f"{npz} exists without {spec_file.name}: it was not made by this runner; choose a new --out or delete it")
            datasets.load(npz)  # sha256, keys, dtypes, shapes: a damaged file is refused here
            if progress:
                print(f"dataset {name}: reusing verified {npz}", flush=True)
            continue
        atomic_write_json(spec_file, record)
        t0 = time.perf_counter()
        behaviour = None
        if spec.level != "random":
            key = json.dumps(datasets.behaviour_config(spec).to_dict(), sort_keys=True)
            behaviour = behaviours.get(key) or behaviours.setdefault(key, datasets.train_behaviour(spec))
        datasets.generate_and_save(spec, npz, behaviour)
        if progress:
            meta = datasets.read_meta(npz)
            print(f"dataset {name}: {meta['size']} transitions, behaviour return {meta['policy_return']:.1f}, "
                  f"{time.perf_counter() - t0:.0f} s -> {npz}", flush=True)
    return paths


def run_experiment(experiment: Experiment, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Train every run of the experiment into OUT/runs/, then write results.csv and the report; returns OUT."""
    import jax

    from jaxrl_suite import report
    from jaxrl_suite.runs import atomic_write_json, provenance, run, write_csv
    from jaxrl_suite.sharding import is_main_process

    # multi-process: every process trains every run (its share of the members; runs.run plans the
    # devices and memory), process 0 alone collects rows and writes the experiment's files
    main = is_main_process()
    progress = progress and main
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json = atomic_write_json if main else (lambda *_: None)
    write_json(out / "experiment.json", {
        "name": experiment.name, "description": experiment.description, "file": experiment.path, "seeds": experiment.seeds,
        "source": experiment.source, "runs": [
            {"name": s.name, "agent": s.agent, "settings": list(s.overrides), "eval_difficulties": list(s.eval_difficulties),
             "variant": {k: _cell(v) for k, v in s.variant.items()},
             "config": s.config.to_dict()} for s in experiment.runs
        ],
    })
    write_json(out / "provenance.json", provenance())
    if experiment.datasets:
        if main:
            prepare_datasets(experiment, out, progress)
        if jax.process_count() > 1:  # the datasets exist on the shared DIR before anyone trains on them
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxrl_suite.run_experiment: datasets ready")
    rows: list[dict[str, Any]] = []
    timings = {}
    for i, spec in enumerate(experiment.runs):
        if progress:
            print(f"[{i + 1}/{len(experiment.runs)}] {spec.name}: {experiment.seeds} seeds x {len(spec.overrides)} settings", flush=True)
        t0 = time.perf_counter()
        run_dir = out / "runs" / spec.name
        config = spec.config
        if spec.dataset:
            config = dataclasses.replace(config, dataset=str(dataset_path(out, spec.dataset).resolve()))
        run(config, run_dir, num_seeds=experiment.seeds, overrides=list(spec.overrides), agent=spec.agent,
            progress=progress, checkpoint=experiment.checkpoint)
        timings[spec.name] = time.perf_counter() - t0
        if main:
            probes = ()
            if spec.dataset and experiment.checkpoint:
                from jaxrl_suite import pretrain

                probes = pretrain.probe_members(run_dir)  # the (frozen or raw) encoding's endo/exo R^2 on the dataset
            rows.extend(run_rows(experiment.name, spec, run_dir, probes))
            rows.extend(generalisation_rows(experiment.name, spec, run_dir))
    if main:
        write_csv(out / "results.csv", rows)
        atomic_write_json(out / "timings.json", {"wall_time_s": timings, "total_s": float(np.sum(list(timings.values())))})
        report.build_report(out)
    if jax.process_count() > 1:  # the others return once the report exists (on the shared DIR)
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxrl_suite.run_experiment: report written")
    return out


def run_command(argv: Sequence[str]) -> Path:
    """`jaxrl-suite run FILE.toml [--seeds N] [--out DIR] [--set key=value ...] [--no-progress]`."""
    parser = argparse.ArgumentParser(prog="jaxrl-suite run", description="Run a named experiment (TOML) and write results.csv, table.md, plots and report.md.")
    parser.add_argument("file", help="experiment file, e.g. experiments/quickstart.toml")
    parser.add_argument("--seeds", type=int, default=None, help="override the file's number of seeds")
    parser.add_argument("--out", default=None, help="output directory (default results/<name>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="dotted key=value override, repeatable")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        raise ExperimentError(f"--seeds {args.seeds} must be a positive integer")
    experiment = load_experiment(args.file, seeds=args.seeds, sets=args.sets)
    out = run_experiment(experiment, args.out or os.path.join("results", experiment.name), progress=not args.no_progress)
    from jaxrl_suite.sharding import is_main_process

    if is_main_process():  # one copy of the table in a multi-host run's logs
        print((out / "table.md").read_text())
        print(f"report: {out / 'report.md'}")
    return out

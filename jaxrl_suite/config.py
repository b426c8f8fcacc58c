"""Typed, frozen training configs and the sweep mechanism: which fields may become a batch axis.

Every agent config is a frozen dataclass that subclasses `TrainConfig` (the environment and the
training-loop fields every agent shares) and adds its own hyperparameters. A field is either

- static: it changes shapes or the program (sizes, network widths, booleans); one value per
  compiled program; or
- sweepable: a continuous knob (learning rate, discount, coefficients), declared with
  `sweep_field(default)`; a batch of runs may give each member its own value.

`make_batch(config, num_seeds, overrides)` turns a config and per-member overrides into the
static config plus a `Batch`: one PRNG key and one value of every sweepable field per member,
stacked on a leading axis, so `jax.vmap(trainer.init)(batch.keys, batch.hyper)` trains the
whole sweep (seeds x settings) as one program. Inside the program an agent reads its knobs
through `config.with_hyper(hyper)`, a copy of the static config whose sweepable fields are the
member's (traced) scalars, so attribute access stays typed and a typo is an AttributeError.

Difficulty is the one non-sweepable field an override may name: difficulty presets of one
distractor type share every shape, so `make_batch` puts each member's distractor params pytree
in its `hyper` under `DISTRACTOR_PARAMS` and the trainer builds that member's env params from it
(see `training`). Besides the presets ("none", "easy", "medium", "hard") a member may take a
generalisation split, "train" or "test": its distractor params are drawn once, from its seed,
uniformly from that split's ranges (`Distractor.sample_params`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SWEEP = "sweep"
DISTRACTOR_PARAMS = "distractor_params"  # hyper key of a member's distractor params (not a config field)
BATCHED_STATIC = ("difficulty",)  # static fields whose values differ only in params: batchable per member
SPLITS = ("train", "test")  # difficulty values drawing params from a generalisation split's ranges
SPLIT_SALT = 0x5D1  # folded into a member's seed key for its split draw, apart from its training keys


def sweep_field(default: Any, **kwargs: Any) -> Any:
    """A dataclass field whose value may differ between members of one batched run."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata[SWEEP] = True
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def sweepable_fields(config: Any) -> tuple[str, ...]:
    """Names of the fields of a config (class or instance) declared with `sweep_field`."""
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get(SWEEP, False))


def static_fields(config: Any) -> tuple[str, ...]:
    """Names of the fields that fix the compiled program (everything not sweepable)."""
    return tuple(f.name for f in dataclasses.fields(config) if not f.metadata.get(SWEEP, False))


def _positive_int(config: Any, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{type(config).__name__}.{name}={value!r} must be a positive integer")


def _positive_sizes(config: Any, name: str) -> None:
    sizes = getattr(config, name)
    if not isinstance(sizes, tuple) or not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"{type(config).__name__}.{name}={sizes!r} must be a non-empty tuple of positive integers")


def validate_network_fields(config: Any, size_fields: Sequence[str] = ("hidden_sizes", "cnn_channels", "cnn_strides")) -> None:
    """The network-shape fields agent configs share: size tuples, matching CNN lengths, a known activation."""
    from jaxrl_suite.networks import ACTIVATIONS  # deferred: configs import without flax

    for name in size_fields:
        _positive_sizes(config, name)
    if len(config.cnn_channels) != len(config.cnn_strides):
        raise ValueError(f"cnn_channels {config.cnn_channels} and cnn_strides {config.cnn_strides} must have the same length")
    if config.activation not in ACTIVATIONS:
        raise ValueError(f"activation={config.activation!r}; valid: {sorted(ACTIVATIONS)}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fields shared by every agent: the environment and the shape of the training loop.

    One update is one agent-defined iteration (PPO: a rollout of num_envs x num_steps and its
    minibatch epochs). Evaluation runs every `eval_every` updates inside the scan; `update`
    advances `evals_per_chunk` evaluation periods per call, so the host sees progress every
    `eval_every * evals_per_chunk` updates. Chunking never changes the result.
    """

    env: str = "cartpole-balance"  # registry name, or "gymnax:<id>" for a gymnax env
    obs: str = "state"  # "state" or "pixels"
    distractor: str = "none"
    difficulty: str = "medium"
    image_size: int = 64
    action_repeat: int = 1
    seed: int = 0  # member i of a batch with S seeds uses seed + (i mod S)
    num_updates: int = 100
    eval_every: int = 10
    evals_per_chunk: int = 1
    eval_episodes: int = 8
    eval_deterministic: bool = True  # mean / argmax action in evaluation
    probe_samples: int = 0  # > 0: each evaluation also probes the encoder's endo/exo R^2 on this many states (representation.py)

    def validate(self) -> None:
        """Raise ValueError for a bad size or a loop shape that does not divide evenly."""
        for name in ("num_updates", "eval_every", "evals_per_chunk", "eval_episodes", "image_size", "action_repeat"):
            _positive_int(self, name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")
        if isinstance(self.probe_samples, bool) or not isinstance(self.probe_samples, (int, np.integer)) or not (self.probe_samples == 0 or self.probe_samples >= 16):
            raise ValueError(f"probe_samples={self.probe_samples!r} must be 0 (no probe) or an integer >= 16 (a held-out quarter of >= 4)")
        chunk = self.eval_every * self.evals_per_chunk
        if self.num_updates % chunk:
            raise ValueError(
                f"num_updates={self.num_updates} must be a multiple of eval_every * evals_per_chunk = "
                f"{self.eval_every} * {self.evals_per_chunk} = {chunk}"
            )

    @property
    def updates_per_chunk(self) -> int:
        """Updates run by one call of `update`."""
        return self.eval_every * self.evals_per_chunk

    @property
    def num_chunks(self) -> int:
        """Calls of `update` in a full run."""
        return self.num_updates // self.updates_per_chunk

    @property
    def num_evals(self) -> int:
        """Evaluation points in a full run."""
        return self.num_updates // self.eval_every

    def hyper(self) -> dict[str, jax.Array]:
        """This config's sweepable values as a pytree of scalars (one member's `hyper`)."""
        return {name: _as_scalar(getattr(self, name)) for name in sweepable_fields(self)}

    def with_hyper(self, hyper: Mapping[str, Any]) -> "TrainConfig":
        """A copy whose sweepable fields take the (possibly traced) values in `hyper` (distractor params aside)."""
        hyper = {k: v for k, v in hyper.items() if k != DISTRACTOR_PARAMS}
        unknown = set(hyper) - set(sweepable_fields(self))
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not sweepable fields of {type(self).__name__}; valid: {list(sweepable_fields(self))}")
        return dataclasses.replace(self, **hyper)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Rebuild from `to_dict` output; unknown keys raise a ValueError listing the fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not fields of {cls.__name__}; valid: {sorted(names)}")
        # JSON turns tuples (hidden sizes, channels) into lists; configs stay hashable with tuples
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _as_scalar(value: Any) -> jax.Array:
    """A sweepable value as a 0-d array: float32 for reals, int32 for ints, bool for flags."""
    if isinstance(value, (bool, np.bool_)):
        return jnp.asarray(value, jnp.bool_)
    if isinstance(value, (int, np.integer)):
        return jnp.asarray(value, jnp.int32)
    return jnp.asarray(value, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Batch:
    """A batched run: keys (B, 2) uint32, hyper {field: (B,)} and a label per member."""

    keys: jax.Array
    hyper: dict[str, jax.Array]
    members: tuple[dict[str, Any], ...]  # {"seed": s, **overrides} per member, for reporting

    @property
    def size(self) -> int:
        """Number of members B."""
        return len(self.members)


def make_batch(
    config: TrainConfig, num_seeds: int = 1, overrides: Sequence[Mapping[str, Any]] | None = None
) -> tuple[TrainConfig, Batch]:
    """Static config and the batch of (setting x seed) members, setting-major.

    Every override dict may only name sweepable fields and `difficulty`; member (k, s) uses
    config.seed + s and the config's values updated by overrides[k]. When any override names a
    difficulty, every member's hyper carries its distractor params (`DISTRACTOR_PARAMS`).
    Validation happens here, before any compile.
    """
    if not dataclasses.is_dataclass(config) or not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig dataclass, got {type(config).__name__}")
    config.validate()
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, (int, np.integer)) or num_seeds < 1:
        raise ValueError(f"num_seeds={num_seeds!r} must be a positive integer")
    overrides = [dict(o) for o in (overrides or [{}])]
    if not overrides:
        raise ValueError("overrides must hold at least one setting (use [{}] for the config as is)")
    valid = sweepable_fields(config)
    for o in overrides:
        bad = sorted(set(o) - set(valid) - set(BATCHED_STATIC))
        if bad:
            raise ValueError(
                f"override fields {bad} are not sweepable in {type(config).__name__}; sweepable: {list(valid)}, "
                f"or per member: {list(BATCHED_STATIC)}"
            )
        # each member's values must themselves pass validation (a split's params are drawn around "medium")
        sweep_part = {k: v for k, v in o.items() if k not in BATCHED_STATIC}
        dataclasses.replace(config, **sweep_part).validate()
    per_member_distractor = any("difficulty" in o for o in overrides)
    distractors = difficulty_params(config, sorted({o.get("difficulty", config.difficulty) for o in overrides})) if per_member_distractor else {}
    members, hypers, seeds = [], [], []
    for o, s in itertools.product(overrides, range(num_seeds)):
        seed = config.seed + s
        members.append({"seed": seed, **o})
        hyper = dataclasses.replace(config, **{k: v for k, v in o.items() if k not in BATCHED_STATIC}).hyper()
        if per_member_distractor:
            hyper[DISTRACTOR_PARAMS] = distractors[o.get("difficulty", config.difficulty)](seed)
        hypers.append(hyper)
        seeds.append(seed)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    # promote leaf dtypes across members (a preset may write 0 where another writes 0.5)
    hyper = jax.tree.map(lambda *xs: jnp.stack(xs), *hypers) if hypers[0] else {}
    return config, Batch(keys=keys, hyper=hyper, members=tuple(members))


def difficulty_params(config: TrainConfig, difficulties: Sequence[str]) -> dict[str, Any]:
    """{difficulty: seed -> distractor params as arrays}: a preset's params, or a seeded draw from a split's ranges."""
    from jaxrl_suite.envs.registry import DIFFICULTIES  # deferred: configs import without the envs
    from jaxrl_suite.rollout import make_env

    valid = list(DIFFICULTIES) + list(SPLITS)
    bad = [d for d in difficulties if d not in valid]
    if bad:
        raise ValueError(f"difficulty overrides {bad} are not valid; valid: {valid}")
    if config.distractor == "none":
        raise ValueError(f"difficulty overrides {list(difficulties)} need a distractor; config.distractor is 'none'")
    out: dict[str, Any] = {}
    for difficulty in difficulties:
        env, params = make_env(dataclasses.replace(config, difficulty="medium" if difficulty in SPLITS else difficulty))
        if getattr(params, "distractor", None) is None or not hasattr(env, "distractor"):
            raise ValueError(f"env {config.env!r} carries no distractor params, so difficulty cannot vary per member")
        if difficulty in SPLITS:
            def draw(seed: int, env=env, base=params.distractor, split=difficulty) -> Any:
                key = jax.random.fold_in(jax.random.PRNGKey(seed), SPLIT_SALT)
                return jax.tree.map(jnp.asarray, env.distractor.sample_params(key, split, base))
            out[difficulty] = draw
        else:
            fixed = jax.tree.map(jnp.asarray, params.distractor)
            out[difficulty] = lambda seed, fixed=fixed: fixed
    return out

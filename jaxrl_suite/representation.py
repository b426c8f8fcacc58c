"""Representation objectives inside the online agents (SAC, PPO, DQN), and the endo/exo probe of training.

Config: `ObjectiveConfig` adds to `TrainConfig` the fields every online agent shares:

- `objective` (static): a `jaxrl_suite.objectives` name. Refused online: `bpr` (it predicts a
  dataset's actions; an online agent has none) and, in agents without multi-step windows, `acro`.
- `objective_weight` (sweepable): the auxiliary loss enters the encoder's update as
  `rl_loss + objective_weight * objective_loss`, one Adam step on both (the separate encoder
  steps of DBC and SAC-AE summed into one, since both share the encoder's optimiser there too).
- `critic_trains_encoder` (static): whether the RL loss's gradient reaches the encoder. True by
  default, following the papers that pair these objectives with SAC (DBC, Zhang et al. 2021;
  CURL, Laskin et al. 2020; SAC-AE, Yarats et al. 2021; MICo and SimSR's SAC variants): the
  critic's gradient trains the encoder and the actor reads a detached latent (DrQ/SAC-AE
  convention). PPO and DQN read it as "the policy/value (resp. Q) loss trains the encoder".
  False leaves the encoder to the objective alone (with objective "none": a frozen random encoder).
- `latent_dim`, `encoder_hidden` (static): the state-observation encoder, an MLP to
  `latent_dim` followed by LayerNorm and tanh (the DBC/SAC-AE encoder's output layer).
  latent_dim = 0 keeps the agents' original state path (observations straight into the heads),
  which has no encoder for an objective to train, so an objective on state observations needs
  latent_dim > 0. Pixels use the agent's CNN, whose `cnn_features` is the latent.
- `repdib_inner` (static): the objective RepDIB's bottleneck wraps.

Objectives read static options only, so `gamma` comes from the static config (a sweep of gamma
leaves the objective's discount at the base config's value), and the objective's heads use the
agent's `hidden_sizes`.

Probe: with `probe_samples > 0` every evaluation also reports the held-out ridge R^2
(`probe.ridge_probe` via `probe.probe_embeddings`) of the agent's current encoding for the env's
`endo` and `exo` vectors: `probe_endo_r2`, `probe_exo_r2`, beside the oracle (the endo vector as
embedding) `probe_endo_r2_oracle`, `probe_exo_r2_oracle` and a randomly initialised agent of
the same architecture `probe_endo_r2_random`, `probe_exo_r2_random`. The probe states are
regenerated at every evaluation from a fixed key (a random-action rollout of
`PROBE_ENVS` envs), not stored: the same states each time, no memory in the train state or
its checkpoints, at the price of a short rollout per evaluation. For the same reason the
random-encoder reference is recomputed from a fixed key each time, so it is a constant column.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_suite import probe
from jaxrl_suite.config import TrainConfig, _positive_int, _positive_sizes, sweep_field
from jaxrl_suite.networks import MLP, CNNEncoder
from jaxrl_suite.objectives import OBJECTIVES, Objective, make_objective

# objectives an online agent cannot feed, and why
ONLINE_REFUSED = {
    "bpr": "bpr predicts the dataset's action from phi(o) (a behaviour prior); an online agent has no dataset actions. "
    "Use it with the offline agents (OfflineConfig.representation='bpr')",
}
PROBE_ENVS = 8  # parallel envs of the probe's random-action rollout
PROBE_SALT = 0x9B0  # folded into a member's eval key for the probe's states
PROBE_RANDOM_SALT = 0x9B1  # ... and for the random-encoder reference
ACRO_MAX_K = 15  # ACRO's K (offsets 1..K-1; the objective's default, Islam et al. 2022)
AUX_SALT = 0xA0B  # folded into a key for the objective's draws, so the no-objective program keeps its own key splits


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig(TrainConfig):
    """The representation-objective fields the online agents share (see the module docstring)."""

    objective: str = "none"
    objective_weight: float = sweep_field(1.0)
    critic_trains_encoder: bool = True
    latent_dim: int = 0  # state observations: 0 = no encoder (the original path); > 0 = an MLP encoder to this size
    encoder_hidden: tuple[int, ...] = (256,)
    repdib_inner: str = "none"

    # objectives this agent cannot feed: {name: reason}; agents extend it (PPO has no multi-step windows)
    refused_objectives: ClassVar[dict[str, str]] = ONLINE_REFUSED

    def validate(self) -> None:
        """Objective names known and feedable, a weight >= 0, an encoder to train for state observations."""
        super().validate()
        valid = sorted(set(OBJECTIVES) - set(self.refused_objectives))
        for field, name in (("objective", self.objective), ("repdib_inner", self.repdib_inner)):
            if name in self.refused_objectives:
                raise ValueError(f"{type(self).__name__}.{field}={name!r} is refused: {self.refused_objectives[name]}; valid: {valid}")
            if name not in OBJECTIVES:
                raise ValueError(f"{type(self).__name__}.{field}={name!r} is not an objective; valid: {valid}")
        if self.repdib_inner == "repdib":
            raise ValueError("repdib_inner='repdib': RepDIB cannot wrap itself; valid: " + str([n for n in valid if n != "repdib"]))
        if not isinstance(self.critic_trains_encoder, bool):
            raise ValueError(f"critic_trains_encoder={self.critic_trains_encoder!r} must be True or False")
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, int) or self.latent_dim < 0:
            raise ValueError(f"latent_dim={self.latent_dim!r} must be a non-negative integer (0: no state encoder)")
        _positive_sizes(self, "encoder_hidden")
        if not self.objective_weight >= 0 or math.isinf(self.objective_weight):
            raise ValueError(f"objective_weight={self.objective_weight!r} must be a finite number >= 0")
        if self.obs == "state" and self.latent_dim == 0 and (self.objective != "none" or not self.critic_trains_encoder):
            raise ValueError(
                f"objective={self.objective!r} with critic_trains_encoder={self.critic_trains_encoder} needs an encoder, but "
                "state observations with latent_dim=0 go to the heads directly; set latent_dim > 0 (e.g. 50, DBC's size)"
            )

    @property
    def wired(self) -> bool:
        """Whether the agent runs with a separate encoder and an objective (else its original program, untouched)."""
        return self.objective != "none" or self.latent_dim > 0 or not self.critic_trains_encoder


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(ObjectiveConfig):
    """The replay loop SAC and DQN share: vectorised collection into a ring buffer, random warm-up, gradient steps."""

    num_envs: int = 4
    collect_steps: int = 1  # agent steps per env per update
    gradient_steps: int = 1  # gradient steps per update
    batch_size: int = 256
    buffer_size: int = 100_000  # transitions kept, split evenly over the envs' ring streams
    warmup_steps: int = 1000  # agent steps (all envs) of uniform random actions before learning starts

    def validate(self) -> None:
        """Loop sizes positive, the buffer large enough per env (and for ACRO's offsets), warm-up >= 0."""
        super().validate()
        for name in ("num_envs", "collect_steps", "gradient_steps", "batch_size", "buffer_size"):
            _positive_int(self, name)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps!r} must be a non-negative integer")
        if self.buffer_size // self.num_envs < 2:
            raise ValueError(f"buffer_size={self.buffer_size} must hold at least 2 transitions per env (num_envs={self.num_envs})")
        if "acro" in (self.objective, self.repdib_inner) and self.buffer_size // self.num_envs < ACRO_MAX_K:
            raise ValueError(
                f"objective acro draws offsets k up to {ACRO_MAX_K - 1}: buffer_size // num_envs = {self.buffer_size // self.num_envs} "
                f"must be >= {ACRO_MAX_K}"
            )

    @property
    def warmup_updates(self) -> int:
        """Updates whose actions are random and whose gradient steps are discarded."""
        return math.ceil(self.warmup_steps / (self.num_envs * self.collect_steps))


class StateEncoder(nn.Module):
    """MLP -> Dense(latent_dim) -> LayerNorm -> tanh: the DBC/SAC-AE encoder head on state vectors."""

    hidden: tuple[int, ...]
    latent_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """(B, D) observations to (B, latent_dim) latents in (-1, 1)."""
        x = MLP(self.hidden, "relu", output_dim=self.latent_dim)(obs.astype(jnp.float32))
        return jnp.tanh(nn.LayerNorm()(x))


def agent_encoder(config: Any, pixels: bool) -> tuple[nn.Module, int]:
    """(encoder, latent size) an online agent's objective trains: its CNN for pixels, else the state MLP encoder."""
    if pixels:
        return CNNEncoder(config.cnn_channels, config.cnn_strides, features=config.cnn_features), config.cnn_features
    return StateEncoder(config.encoder_hidden, config.latent_dim), config.latent_dim


def build_objective(
    config: ObjectiveConfig,
    encoder: nn.Module,
    latent_dim: int,
    action_dim: int,
    discrete_actions: bool,
    obs_shape: tuple[int, ...],
    gamma: float,
    shift_pad: int | None = None,
) -> Objective:
    """The configured objective around the agent's encoder, with options from the agent's config."""

    def options_for(name: str) -> dict[str, Any]:
        names = OBJECTIVES[name].option_names()
        options: dict[str, Any] = {}
        if "hidden" in names:
            options["hidden"] = tuple(config.hidden_sizes)
        if "gamma" in names:
            options["gamma"] = float(gamma)
        if "shift_pad" in names and shift_pad is not None:
            options["shift_pad"] = shift_pad
        return options

    options = options_for(config.objective)
    if config.objective == "repdib":
        options = {"inner": config.repdib_inner, **options_for(config.repdib_inner)}
    return make_objective(config.objective, encoder, latent_dim, action_dim, discrete_actions, obs_shape, **options)


def multistep_batch(pairs: dict[str, jax.Array], fallback: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """ACRO's (obs, action, obs_k, k) from `replay.sample_multistep_pairs`; a draw whose k fits nowhere yet
    falls back to the one-step transition of `fallback` (k = 1), so early batches hold no empty rows."""
    valid = pairs["valid"]

    def pick(a, b):
        return jnp.where(valid.reshape(valid.shape + (1,) * (a.ndim - 1)), a, b)

    return {
        "obs": pick(pairs["obs"], fallback["obs"]),
        "action": pick(pairs["action"], fallback["action"]),
        "obs_k": pick(pairs["future_obs"], fallback["next_obs"]),
        "k": jnp.where(valid, pairs["k"], 1).astype(jnp.int32),
    }


def aux_metrics(loss: jax.Array, aux: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """An objective's loss and aux scalars as agent metrics: objective_loss, objective_<name>."""
    return {"objective_loss": loss, **{f"objective_{k}": v for k, v in aux.items() if k != "loss"}}


# ---- the probe -----------------------------------------------------------------------------------


def check_probe_env(env: Any, env_params: Any) -> None:
    """Refuse an env whose step info lacks the `endo`/`exo` vectors the probe regresses on (trace only)."""
    key = jax.random.PRNGKey(0)

    def one_step(k):
        obs, state = env.reset(k, env_params)
        return env.step(k, state, env.action_space(env_params).sample(k), env_params)[-1]

    info = jax.eval_shape(one_step, key)
    missing = [name for name in ("endo", "exo") if name not in info]
    if missing:
        raise ValueError(
            f"probe_samples > 0 needs info[{missing[0]!r}] from the env's step (the suite's own tasks give 'endo' and 'exo'); "
            f"env {getattr(env, 'name', type(env).__name__)!r} gives {sorted(info)}"
        )


def probe_rollout(env: Any, env_params: Any, key: jax.Array, num_samples: int) -> dict[str, jax.Array]:
    """Time-major (T, PROBE_ENVS, ...) random-action rollout covering `num_samples` states.

    Keys: obs (the observation after each step), action (the env action that led to it), first
    (True where that step ended an episode, so obs is the auto-reset start of a new one), endo, exo.
    """
    num_envs = min(PROBE_ENVS, num_samples)
    steps = -(-num_samples // num_envs)
    key_reset, key_run = jax.random.split(key)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), env_params)
    space = env.action_space(env_params)

    def step(state, step_key):
        key_act, key_env = jax.random.split(step_key)
        actions = jax.vmap(space.sample)(jax.random.split(key_act, num_envs))
        obs, state, _, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key_env, num_envs), state, actions, env_params
        )
        first = jnp.logical_or(terminated, truncated)
        return state, {"obs": obs, "action": actions, "first": first, "endo": info["endo"], "exo": info["exo"]}

    _, rollout = jax.lax.scan(step, state, jax.random.split(key_run, steps))
    return rollout


def flatten_probe(x: jax.Array, num_samples: int) -> jax.Array:
    """(T, N, ...) rollout leaves to the first `num_samples` rows of (T * N, ...), time-major order."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])[:num_samples]


def probe_states(env: Any, env_params: Any, key: jax.Array, num_samples: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(obs, endo, exo) of `num_samples` states visited by uniformly random actions in PROBE_ENVS envs."""
    rollout = probe_rollout(env, env_params, key, num_samples)
    return tuple(flatten_probe(rollout[name], num_samples) for name in ("obs", "endo", "exo"))


def probe_metrics(
    encode: Callable[[Any, jax.Array], jax.Array] | None,
    agent_state: Any,
    random_state: Callable[[jax.Array], Any],
    env: Any,
    env_params: Any,
    eval_key: jax.Array,
    num_samples: int,
    encode_sequence: Callable[[Any, dict[str, jax.Array]], jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """Held-out ridge R^2 for endo and exo of the agent's encoding, the oracle's and a random agent's (one split).

    `encode(agent_state, obs)` embeds single observations; an agent with memory passes
    `encode_sequence(agent_state, rollout) -> (T, N, latent)` instead, which filters the
    time-major `probe_rollout` (the same states) through its recurrent state.
    """
    rollout = probe_rollout(env, env_params, jax.random.fold_in(eval_key, PROBE_SALT), num_samples)
    obs, endo, exo = (flatten_probe(rollout[name], num_samples) for name in ("obs", "endo", "exo"))

    def embed(state: Any) -> jax.Array:
        if encode_sequence is None:
            return encode(state, obs)
        return flatten_probe(encode_sequence(state, rollout), num_samples)

    split_key = jax.random.fold_in(eval_key, PROBE_SALT + 1)
    learned = probe.probe_embeddings(embed(agent_state), endo, exo, split_key)
    random = probe.probe_embeddings(embed(random_state(jax.random.fold_in(eval_key, PROBE_RANDOM_SALT))), endo, exo, split_key)
    oracle = probe.probe_embeddings(endo, endo, exo, split_key)
    return {
        "probe_endo_r2": learned["endo_r2"],
        "probe_exo_r2": learned["exo_r2"],
        "probe_endo_r2_random": random["endo_r2"],
        "probe_exo_r2_random": random["exo_r2"],
        "probe_endo_r2_oracle": oracle["endo_r2"],
        "probe_exo_r2_oracle": oracle["exo_r2"],
    }

"""The training-loop contract every agent plugs into: pure `init`, chunked `update`, one-program `train`.

An agent supplies `make_agent(env_params) -> Agent` (four pure functions and a step count);
`make_trainer` wraps it into a `Trainer` with

    init(key, hyper=None) -> TrainState
    update(state) -> (state, metrics)    # evals_per_chunk x (eval_every updates, then one evaluation)
    evaluate(state) -> {return_mean, return_std, episode_length}
    train(key, hyper=None) -> (state, metrics)   # num_chunks updates composed by jax.lax.scan

all pure and unjitted; `batched(trainer)` gives their jitted `jax.vmap`s over a leading member
axis (seeds x sweep settings, see `config.make_batch`). Because `train` is literally a scan of
`update`, running the chunks one by one from the host gives bitwise the same state and metrics,
so checkpoint-and-resume is exact.

Difficulty is data, not program: each member carries its distractor's params pytree in
`hyper[DISTRACTOR_PARAMS]` (defaulting to the env params' own), and the trainer calls
`make_agent(env_params.replace(distractor=those params))` inside the traced init/update/evaluate.
Building an agent is pure Python (closures over networks and env), so doing it inside the trace
costs nothing, and a batch whose members sit at different difficulty presets of one distractor
type is one compiled program (`config.make_batch` with `difficulty` overrides). Only settings
that change shapes (distractor type, counts, image size) stay static.

Evaluation happens at the end of each period of `eval_every` updates, by nesting scans rather
than by `lax.cond` (which vmap turns into "run both branches"). Its key is
`fold_in(state.eval_key, state.step)`, a function of the state alone, so `evaluate(final_state)`
reproduces the last in-scan evaluation.

Divergence guard: after each update, if any reported loss or any floating leaf of the new agent
state is non-finite, the member keeps its previous agent state (parameters, optimiser state,
env state) and its `diverged` flag is set for good; other members are untouched, since under
vmap every member's computation is independent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_suite.config import DISTRACTOR_PARAMS, TrainConfig
from jaxrl_suite.evaluation import episode_limit
from jaxrl_suite.evaluation import evaluate as evaluate_policy
from jaxrl_suite.representation import check_probe_env, probe_metrics

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Agent:
    """What an agent provides to the generic loop; all functions pure and jittable.

    init(key, cfg) -> agent_state
        cfg is the static config with this member's sweepable values (`cfg.with_hyper`).
    update(agent_state, key, cfg, step) -> (agent_state, losses, stats)
        one update (collect + learn); `step` counts updates done so far (int32 scalar);
        losses: {name: scalar}, checked for finiteness and averaged over an eval period;
        stats: {name: scalar}, not checked, NaN-ignoring mean over the period (e.g. the return
        of training episodes, NaN when none finished).
    act(agent_state, obs, key, deterministic) -> action, for a batch of observations.
    evaluate(agent_state, key) -> {return_mean, return_std, episode_length}, optional: replaces
        the generic evaluation of `act` for agents whose policy has memory (world models).
    encode(agent_state, obs) -> (B, latent), optional: the representation the agent's heads read,
        what `config.probe_samples > 0` probes for endo/exo at every evaluation
        (`representation.probe_metrics`); agents without it (or `encode_sequence`) refuse the probe.
    encode_sequence(agent_state, rollout) -> (T, N, latent), optional: the same for agents with
        memory (world models), over the probe's time-major `representation.probe_rollout`; used
        instead of `encode` when given.
    """

    init: Callable[[jax.Array, TrainConfig], Any]
    update: Callable[[Any, jax.Array, TrainConfig, jax.Array], tuple[Any, Metrics, Metrics]]
    act: Callable[[Any, jax.Array, jax.Array, bool], jax.Array]
    env_steps_per_update: int
    evaluate: Callable[[Any, jax.Array], Metrics] | None = None
    encode: Callable[[Any, jax.Array], jax.Array] | None = None
    encode_sequence: Callable[[Any, dict[str, jax.Array]], jax.Array] | None = None


@struct.dataclass
class TrainState:
    """One member's training state; batched runs stack every leaf on a leading member axis."""

    agent: Any  # the agent's own pytree (params, optimiser state, env carry, normalisers, buffers)
    hyper: dict[str, Any]  # this member's sweepable values and its distractor params (DISTRACTOR_PARAMS)
    key: jax.Array  # training key chain, raw uint32 (2,)
    eval_key: jax.Array  # fixed base key of evaluations
    step: jax.Array  # updates done (int32)
    diverged: jax.Array  # bool, sticky


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Pure functions of one member's run plus what built them."""

    config: TrainConfig
    env: Any
    env_params: Any  # the config's own env params; a member's distractor params replace the distractor's
    agent: Agent  # built for `env_params`: host-side facts (env_steps_per_update) and unbatched use
    init: Callable[..., TrainState]
    update: Callable[[TrainState], tuple[TrainState, Metrics]]
    evaluate: Callable[[TrainState], Metrics]
    train: Callable[..., tuple[TrainState, Metrics]]

    make_agent: Callable[[Any], Agent] | None = None

    @property
    def env_steps_per_update(self) -> int:
        """Agent-env interactions per update (each may be several physics steps under action_repeat)."""
        return self.agent.env_steps_per_update

    def member_env_params(self, state: TrainState) -> Any:
        """The env params one member trains and evaluates under (its own distractor params)."""
        return with_distractor(self.env_params, state.hyper.get(DISTRACTOR_PARAMS))

    def member_agent(self, state: TrainState) -> Agent:
        """The agent built for one member's env params (what its update and evaluation use)."""
        return self.agent if self.make_agent is None else self.make_agent(self.member_env_params(state))


def raw_key(key: jax.Array) -> jax.Array:
    """A PRNG key as raw uint32 data (what checkpoints and vmaps store)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def all_finite(tree: Any) -> jax.Array:
    """True when every floating leaf of a pytree is finite (scalar bool)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def tree_where(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Select between two pytrees of the same structure with one scalar predicate."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def distractor_data(env_params: Any) -> Any:
    """The distractor params of `env_params` as arrays (None for envs without a distractor field)."""
    distractor = getattr(env_params, "distractor", None)
    return None if distractor is None else jax.tree.map(jnp.asarray, distractor)


def with_distractor(env_params: Any, distractor: Any) -> Any:
    """`env_params` with its distractor params replaced (unchanged when `distractor` is None)."""
    return env_params if distractor is None else env_params.replace(distractor=distractor)


def make_trainer(config: TrainConfig, make_agent: Callable[[Any], Agent] | Agent, env: Any, env_params: Any) -> Trainer:
    """Wrap an agent into the chunked, evaluating, divergence-guarded loop (nothing compiles here).

    `make_agent(env_params) -> Agent` is called inside the traced functions with each member's env
    params; an `Agent` may be passed instead when its training never touches the env (offline
    agents learn from a dataset; evaluation still runs under each member's env params).
    """
    config.validate()
    eval_steps = episode_limit(env, env_params)
    build_agent = (lambda _: make_agent) if isinstance(make_agent, Agent) else make_agent

    def build(params: Any) -> Agent:
        # agent construction evaluates shape facts with jnp on constants (action sizes, box
        # bounds); compile-time evaluation keeps those concrete inside the trace, while anything
        # touching the member's (traced) distractor params is still staged into the program
        with jax.ensure_compile_time_eval():
            return build_agent(params)

    host_agent = build(env_params)
    if config.probe_samples:
        if host_agent.encode is None and host_agent.encode_sequence is None:
            raise ValueError(f"probe_samples={config.probe_samples} needs an agent that exposes its encoder (Agent.encode or "
                             f"Agent.encode_sequence); {type(config).__name__}'s agent does not (ppo, sac, dqn, dreamer and "
                             "dreamer-robust do)")
        check_probe_env(env, env_params)

    def member_params(hyper: dict[str, Any]) -> Any:
        return with_distractor(env_params, hyper.get(DISTRACTOR_PARAMS))

    def init(key: jax.Array, hyper: dict[str, Any] | None = None) -> TrainState:
        """Fresh state for one member; `hyper` defaults to the config's own sweepable values and distractor params."""
        hyper = dict(config.hyper() if hyper is None else hyper)
        if DISTRACTOR_PARAMS not in hyper:
            hyper[DISTRACTOR_PARAMS] = distractor_data(env_params)
        key_agent, key_train, key_eval = jax.random.split(raw_key(key), 3)
        agent_state = build(member_params(hyper)).init(key_agent, config.with_hyper(hyper))
        return TrainState(
            agent=agent_state,
            hyper=hyper,
            key=key_train,
            eval_key=key_eval,
            step=jnp.zeros((), jnp.int32),
            diverged=jnp.zeros((), bool),
        )

    def one_update(state: TrainState, _: Any) -> tuple[TrainState, tuple[Metrics, Metrics]]:
        """One agent update behind the divergence guard."""
        key, key_update = jax.random.split(state.key)
        agent = build(member_params(state.hyper))
        new_agent, losses, stats = agent.update(state.agent, key_update, config.with_hyper(state.hyper), state.step)
        bad = jnp.logical_not(jnp.logical_and(all_finite(losses), all_finite(new_agent)))
        diverged = jnp.logical_or(state.diverged, bad)
        agent_state = tree_where(diverged, state.agent, new_agent)
        new_state = state.replace(agent=agent_state, key=key, step=state.step + 1, diverged=diverged)
        return new_state, (losses, stats)

    def evaluate(state: TrainState) -> Metrics:
        """Evaluate the current policy with a key fixed by (eval_key, step)."""
        key = jax.random.fold_in(state.eval_key, state.step)
        params = member_params(state.hyper)
        agent = build(params)
        if agent.evaluate is not None:
            metrics = agent.evaluate(state.agent, key)
        else:

            def act(obs, act_key):
                return agent.act(state.agent, obs, act_key, config.eval_deterministic)

            metrics = evaluate_policy(env, params, act, key, config.eval_episodes, eval_steps)
        if config.probe_samples:
            # probe states and the random reference come from keys fixed per member, not per step
            def random_agent(random_key: jax.Array) -> Any:
                return agent.init(random_key, config.with_hyper(state.hyper))

            metrics = {**metrics, **probe_metrics(
                agent.encode, state.agent, random_agent, env, params, state.eval_key, config.probe_samples, agent.encode_sequence
            )}
        return metrics

    def period(state: TrainState, _: Any) -> tuple[TrainState, Metrics]:
        """`eval_every` updates, then one evaluation; returns that evaluation point's metrics."""
        state, (losses, stats) = jax.lax.scan(one_update, state, None, length=config.eval_every)
        metrics = {
            "step": state.step,
            "env_steps": state.step * host_agent.env_steps_per_update,
            **evaluate(state),
            **{name: jnp.mean(v) for name, v in losses.items()},
            **{name: jnp.nanmean(v) for name, v in stats.items()},
            "diverged": state.diverged,
        }
        return state, metrics

    def update(state: TrainState) -> tuple[TrainState, Metrics]:
        """One chunk: `evals_per_chunk` periods; metrics (evals_per_chunk,) per name."""
        return jax.lax.scan(period, state, None, length=config.evals_per_chunk)

    def train(key: jax.Array, hyper: dict[str, jax.Array] | None = None) -> tuple[TrainState, Metrics]:
        """The whole run as one program: init, then `num_chunks` chunks; metrics (num_evals,) per name."""
        state = init(key, hyper)
        state, metrics = jax.lax.scan(lambda s, _: update(s), state, None, length=config.num_chunks)
        # (chunks, evals_per_chunk) -> one axis of evaluation points, as the host loop concatenates them
        return state, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), metrics)

    return Trainer(
        config=config, env=env, env_params=env_params, agent=host_agent, init=init, update=update, evaluate=evaluate,
        train=train, make_agent=build,
    )


@dataclasses.dataclass(frozen=True)
class BatchedTrainer:
    """Jitted vmaps of a Trainer's functions over a leading member axis."""

    trainer: Trainer
    init: Callable[[jax.Array, dict[str, jax.Array]], TrainState]
    update: Callable[[TrainState], tuple[TrainState, Metrics]]
    evaluate: Callable[[TrainState], Metrics]
    train: Callable[[jax.Array, dict[str, jax.Array]], tuple[TrainState, Metrics]]


def batched(trainer: Trainer) -> BatchedTrainer:
    """vmap every function over members (keys (B, 2), hyper {name: (B,)}) and jit it."""
    return BatchedTrainer(
        trainer=trainer,
        init=jax.jit(jax.vmap(trainer.init)),
        update=jax.jit(jax.vmap(trainer.update)),
        evaluate=jax.jit(jax.vmap(trainer.evaluate)),
        train=jax.jit(jax.vmap(trainer.train)),
    )


def concat_metrics(chunks: list[Metrics]) -> Metrics:
    """Join per-chunk metrics (B, K) along the evaluation axis, as `train` lays them out."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *chunks)

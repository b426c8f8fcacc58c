"""Double DQN (Mnih et al. 2015; van Hasselt et al. 2016) on one page, plugged into `training`.

One update = step `num_envs` envs `collect_steps` times with an epsilon-greedy policy
(`rollout.rollout`), append the transitions to the on-device replay buffer (`replay`), then
`gradient_steps` gradient steps, each on a fresh uniform batch. Epsilon decays linearly from
`epsilon_start` to `epsilon_end` over the first `exploration_fraction` of the run's updates
(Mnih et al. 2015, Methods). During the first `warmup_steps` agent steps actions are uniform and
the network is not updated (the buffer is only filled).

Loss (per gradient step): Huber (delta 1, the error clipping of Mnih et al. 2015) between
Q(s, a) and the double-DQN target (van Hasselt et al. 2016, eq. 4)

    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a')),

the action chosen by the online network and evaluated by the target network. The buffer stores
the true last observation of an episode, so a time-limit truncation bootstraps from it and only a
termination zeroes the future. Gradients are clipped by global norm.

Target network: every `target_update_every` gradient steps, target <- tau * online + (1 - tau) *
target. tau = 1 is the periodic hard copy of Mnih et al. (2015); target_update_every = 1 with a
small tau is Polyak averaging.

Network: an MLP on state vectors, or the shared CNN encoder followed by an MLP on pixels, with
one output per discrete action. Discrete actions only: a Box action space raises a ValueError
naming it, before anything compiles.

Representation objectives (`representation.ObjectiveConfig`): with `objective` set (or a state
encoder, latent_dim > 0) the network is an encoder (the CNN, or an MLP on states) plus the Q
MLP on its latent, and each gradient step minimises huber + objective_weight * the objective's
loss on the same replay minibatch (ACRO: on multi-step pairs from
`replay.sample_multistep_pairs`). The objective's target encoder is the DQN target network's
encoder, as in MICo's DQN-family agents (Castro et al. 2021); `critic_trains_encoder=False`
detaches the latent from the TD loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite import replay
from jaxrl_suite import rollout as rl
from jaxrl_suite.config import _positive_int, sweep_field, validate_network_fields
from jaxrl_suite.losses import huber
from jaxrl_suite.networks import MLP, CNNEncoder, ValueHead
from jaxrl_suite.representation import ACRO_MAX_K, AUX_SALT, OffPolicyConfig, agent_encoder, aux_metrics, build_objective, multistep_batch
from jaxrl_suite.training import Agent, Trainer, make_trainer


@dataclasses.dataclass(frozen=True)
class DQNConfig(OffPolicyConfig):
    """DQN hyperparameters; defaults follow CleanRL's dqn.py for classic control, scaled to vectorised envs; replay-loop and objective fields from OffPolicyConfig."""

    batch_size: int = 128
    buffer_size: int = 10_000
    hidden_sizes: tuple[int, ...] = (120, 84)
    activation: str = "relu"
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    cnn_strides: tuple[int, ...] = (2, 2, 1)
    cnn_features: int = 64
    target_update_every: int = 500  # gradient steps between target updates
    learning_rate: float = sweep_field(2.5e-4)
    gamma: float = sweep_field(0.99)
    tau: float = sweep_field(1.0)  # 1.0: hard copy (Mnih et al. 2015)
    epsilon_start: float = sweep_field(1.0)
    epsilon_end: float = sweep_field(0.05)
    exploration_fraction: float = sweep_field(0.5)  # of num_updates, over which epsilon decays
    max_grad_norm: float = sweep_field(10.0)

    def validate(self) -> None:
        """Sizes positive, the buffer large enough per env, rates and probabilities in range."""
        super().validate()
        for name in ("cnn_features", "target_update_every"):
            _positive_int(self, name)
        validate_network_fields(self)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} must be > 0")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm!r} must be > 0")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma!r} must be in [0, 1]")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau={self.tau!r} must be in (0, 1]")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a probability in [0, 1]")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(f"exploration_fraction={self.exploration_fraction!r} must be in (0, 1]")


# Named starting points; `jaxrl-suite train --agent dqn --preset NAME` starts from these.
PRESETS: dict[str, DQNConfig] = {
    # gymnax's CartPole-v1: CleanRL's classic-control settings with 4 envs, a 4x larger learning rate,
    # a 5x more frequent target copy and faster decay. By hand, 2 seeds: with CleanRL's values (lr
    # 2.5e-4, copy every 500, decay over half the run) evaluation returns were ~100-175 after 10k
    # updates (40k agent steps); with these ~160 after 1k updates. Not tuned further.
    "gymnax-cartpole": DQNConfig(
        env="gymnax:CartPole-v1", num_envs=4, buffer_size=10_000, warmup_steps=500, batch_size=128, hidden_sizes=(64, 64),
        num_updates=10_000, eval_every=1000, target_update_every=100, learning_rate=1e-3, exploration_fraction=0.3,
    ),
    # exo-gridworld from 16-px pixels on a 2-core CPU: a small CNN, sparse reward 1 at the goal
    "gridworld-pixels-cpu": DQNConfig(
        env="exo-gridworld", obs="pixels", image_size=16, num_envs=8, buffer_size=20_000, warmup_steps=1000, batch_size=64,
        hidden_sizes=(64,), cnn_channels=(16, 16), cnn_strides=(2, 1), cnn_features=32, num_updates=5000, eval_every=500,
        eval_episodes=16, target_update_every=200, learning_rate=1e-3, gamma=0.95, exploration_fraction=0.3,
    ),
}


class QNetwork(nn.Module):
    """One Q-value per discrete action from an observation (MLP for state, CNN encoder then MLP for pixels)."""

    num_actions: int
    pixels: bool
    hidden_sizes: tuple[int, ...]
    activation: str
    cnn_channels: tuple[int, ...]
    cnn_strides: tuple[int, ...]
    cnn_features: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """(B, ...) observations to (B, num_actions) Q-values."""
        x = CNNEncoder(self.cnn_channels, self.cnn_strides, features=self.cnn_features)(obs) if self.pixels else obs.astype(jnp.float32)
        return ValueHead(self.num_actions)(MLP(self.hidden_sizes, self.activation)(x))


@struct.dataclass
class DQNState:
    """Everything DQN carries between updates."""

    params: Any
    target_params: Any
    opt_state: Any
    gradient_step: jax.Array  # gradient steps taken (int32), times the target updates
    env: rl.RolloutState
    buffer: replay.ReplayBuffer


LEARNED_FIELDS = ("params", "target_params", "opt_state", "gradient_step")


def discrete_action_count(env: Any, env_params: Any) -> int:
    """The number of actions of a Discrete action space; any other space raises a ValueError naming it."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        name = getattr(env, "env_id", None) or getattr(env, "name", type(env).__name__)
        detail = f"Box(shape={tuple(space.shape)})" if isinstance(space, spaces.Box) else type(space).__name__
        raise ValueError(f"DQN needs a discrete action space; env {name!r} has a continuous {detail} action space. Use sac or ppo for it")
    return int(space.n)


def epsilon_at(cfg: DQNConfig, step: jax.Array, num_updates: int) -> jax.Array:
    """Linearly decayed exploration rate after `step` updates (Mnih et al. 2015, Methods)."""
    frac = jnp.clip(step.astype(jnp.float32) / (cfg.exploration_fraction * num_updates), 0.0, 1.0)
    return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)


def double_q_target(q_next_online: jax.Array, q_next_target: jax.Array, reward: jax.Array, discount: jax.Array, gamma: jax.Array) -> jax.Array:
    """r + gamma * discount * Q_target(s', argmax Q_online(s', .)) (van Hasselt et al. 2016, eq. 4)."""
    best = jnp.argmax(q_next_online, axis=-1)
    value = jnp.take_along_axis(q_next_target, best[:, None], axis=-1)[:, 0]
    return reward + gamma * discount * value


def make_agent(config: DQNConfig, env: Any, env_params: Any) -> Agent:
    """DQN's init/update/act for one env; `config` supplies static sizes, `cfg` (per call) the knobs."""
    num_actions = discrete_action_count(env, env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    pixels = len(obs_shape) == 3
    capacity = config.buffer_size // config.num_envs + 2  # + the provisional row and one final row
    warmup_updates = config.warmup_updates
    network = QNetwork(
        num_actions, pixels, config.hidden_sizes, config.activation, config.cnn_channels, config.cnn_strides, config.cnn_features
    )

    objective = None
    if config.wired:  # else the original program, untouched
        encoder, latent_dim = agent_encoder(config, pixels)
        objective = build_objective(config, encoder, latent_dim, num_actions, True, obs_shape, config.gamma)
        q_head = QNetwork(
            num_actions, False, config.hidden_sizes, config.activation, config.cnn_channels, config.cnn_strides, config.cnn_features
        )
    multistep = objective is not None and "obs_k" in objective.requires

    def q_values(params, obs: jax.Array, detach: bool = False) -> jax.Array:
        # detach: the TD loss does not train the encoder (critic_trains_encoder=False)
        if objective is None:
            return network.apply(params, obs)
        latent = objective.encode({"encoder": params["encoder"], "heads": params["heads"]}, obs)
        return q_head.apply(params["q"], jax.lax.stop_gradient(latent) if detach else latent)

    def optimizer(cfg: DQNConfig) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate))

    def epsilon_greedy(params, obs, key, epsilon):
        key_explore, key_random = jax.random.split(key)
        greedy = jnp.argmax(q_values(params, obs), axis=-1).astype(jnp.int32)
        random = jax.random.randint(key_random, greedy.shape, 0, num_actions, jnp.int32)
        return jnp.where(jax.random.uniform(key_explore, greedy.shape) < epsilon, random, greedy)

    def init(key: jax.Array, cfg: DQNConfig) -> DQNState:
        key_net, key_env = jax.random.split(key)
        env_carry = rl.reset(env, env_params, key_env, config.num_envs)
        if objective is None:
            params = network.init(key_net, env_carry.obs[:1])
        else:
            key_objective, key_q = jax.random.split(key_net)
            n = config.num_envs
            example_batch = {
                "obs": env_carry.obs, "action": jnp.zeros((n,), jnp.int32), "reward": jnp.zeros((n,)), "next_obs": env_carry.obs,
                "discount": jnp.ones((n,)), "obs_k": env_carry.obs, "k": jnp.ones((n,), jnp.int32),
            }
            params = objective.init(key_objective, example_batch)
            params["q"] = q_head.init(key_q, objective.encode(params, env_carry.obs[:1]))
        example = {
            "obs": env_carry.obs[0],
            "action": jnp.zeros((), jnp.int32),
            "reward": jnp.zeros((), jnp.float32),
            "next_obs": env_carry.obs[0],
            "terminated": jnp.zeros((), bool),
            "truncated": jnp.zeros((), bool),
        }
        return DQNState(
            params=params,
            target_params=params,
            opt_state=optimizer(cfg).init(params),
            gradient_step=jnp.zeros((), jnp.int32),
            env=env_carry,
            buffer=replay.init(example, config.num_envs, capacity),
        )

    def loss_fn(params, target_params, cfg: DQNConfig, batch, aux_batch, key):
        detach = not config.critic_trains_encoder
        q = q_values(params, batch["obs"], detach)
        q_taken = jnp.take_along_axis(q, batch["action"][:, None].astype(jnp.int32), axis=-1)[:, 0]
        q_next_online = q_values(params, batch["next_obs"], detach)
        q_next_target = q_values(target_params, batch["next_obs"])
        target = jax.lax.stop_gradient(double_q_target(q_next_online, q_next_target, batch["reward"], batch["discount"], cfg.gamma))
        td_loss = huber(q_taken, target)
        if objective is None:
            return td_loss, (jnp.mean(q_taken), {})
        heads = params["heads"]
        objective_loss, aux = objective.loss(
            {"encoder": params["encoder"], "heads": heads}, {"encoder": target_params["encoder"], "heads": heads}, aux_batch, key
        )
        total = td_loss + cfg.objective_weight * objective_loss
        return total, (jnp.mean(q_taken), {"td_loss": td_loss, **aux_metrics(objective_loss, aux)})

    def gradient_step(carry, cfg: DQNConfig, batch, aux_batch=None, key=None):
        (loss, (q_mean, objective_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            carry["params"], carry["target_params"], cfg, batch, aux_batch, key
        )
        updates, opt_state = optimizer(cfg).update(grads, carry["opt_state"], carry["params"])
        params = optax.apply_updates(carry["params"], updates)
        count = carry["gradient_step"] + 1
        due = count % config.target_update_every == 0
        averaged = optax.incremental_update(params, carry["target_params"], cfg.tau)
        target_params = jax.tree.map(lambda new, old: jnp.where(due, new, old), averaged, carry["target_params"])
        new_carry = {"params": params, "target_params": target_params, "opt_state": opt_state, "gradient_step": count}
        return new_carry, {"loss": loss, "q_mean": q_mean, **objective_metrics}

    def update(state: DQNState, key: jax.Array, cfg: DQNConfig, step: jax.Array):
        key_roll, key_sample = jax.random.split(key)
        warm = step < warmup_updates
        # the warm-up acts uniformly at random (epsilon 1)
        epsilon = jnp.where(warm, 1.0, epsilon_at(cfg, step, config.num_updates))

        def policy(obs, act_key):
            return epsilon_greedy(state.params, obs, act_key, epsilon), {}

        env_carry, traj = rl.rollout(env, env_params, policy, state.env, key_roll, config.collect_steps)
        buffer = replay.add_steps(
            state.buffer,
            {
                "obs": traj.obs,
                "action": traj.action,
                "reward": traj.reward,
                "next_obs": traj.next_obs,
                "terminated": traj.terminated,
                "truncated": traj.truncated,
            },
        )
        # one sampler call for all gradient steps: validity masks are computed once per update
        sample = replay.sample_transitions(buffer, key_sample, config.gradient_steps * config.batch_size)
        batches = jax.tree.map(lambda x: x.reshape((config.gradient_steps, config.batch_size) + x.shape[1:]), sample)
        before = {name: getattr(state, name) for name in LEARNED_FIELDS}
        if objective is None:
            after, metrics = jax.lax.scan(lambda c, b: gradient_step(c, cfg, b), before, batches)
        else:
            key_aux = jax.random.fold_in(key_sample, AUX_SALT)
            if multistep:
                pairs = replay.sample_multistep_pairs(buffer, key_aux, config.gradient_steps * config.batch_size, ACRO_MAX_K)
                aux_sample = multistep_batch(pairs, sample)
            else:
                aux_sample = {name: sample[name] for name in ("obs", "action", "reward", "next_obs", "discount")}
            aux_batches = jax.tree.map(lambda x: x.reshape((config.gradient_steps, config.batch_size) + x.shape[1:]), aux_sample)
            keys = jax.random.split(jax.random.fold_in(key_aux, 1), config.gradient_steps)
            after, metrics = jax.lax.scan(lambda c, xs: gradient_step(c, cfg, *xs), before, (batches, aux_batches, keys))
        # warm-up: the network stays as it was; the buffer and the env carry advance either way
        kept = jax.tree.map(lambda old, new: jnp.where(warm, old, new), before, after)
        new_state = state.replace(buffer=buffer, env=env_carry, **kept)
        num_finished = traj.done.sum()
        stats = {
            "train_return": jnp.where(num_finished > 0, traj.episode_return.sum() / jnp.maximum(num_finished, 1), jnp.nan),
            "epsilon": epsilon,
        }
        return new_state, jax.tree.map(jnp.mean, metrics), stats

    def act(state: DQNState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        # stochastic evaluation keeps the final exploration rate (epsilon_end), as Mnih et al. evaluate with a small epsilon
        epsilon = 0.0 if deterministic else config.epsilon_end
        return epsilon_greedy(state.params, obs, key, epsilon)

    def encode(state: DQNState, obs: jax.Array) -> jax.Array:
        """The latent the Q head reads: the objective's encoder, else the CNN (pixels) or the MLP torso (states)."""
        if objective is not None:
            return objective.encode({"encoder": state.params["encoder"], "heads": state.params["heads"]}, obs)
        torso = CNNEncoder if pixels else MLP
        _, captured = network.apply(
            state.params, obs, capture_intermediates=lambda module, method: method == "__call__" and isinstance(module, torso)
        )
        return captured["intermediates"][f"{torso.__name__}_0"]["__call__"][0]

    return Agent(init=init, update=update, act=act, env_steps_per_update=config.num_envs * config.collect_steps, encode=encode)


def make_train(config: DQNConfig) -> Trainer:
    """DQN's Trainer for a config: validates, builds the env, refuses continuous actions, wires the agent in."""
    if not isinstance(config, DQNConfig):
        raise ValueError(f"DQN needs a DQNConfig, got {type(config).__name__}")
    config.validate()
    env, env_params = rl.make_env(config)
    return make_trainer(config, lambda member_params: make_agent(config, env, member_params), env, env_params)

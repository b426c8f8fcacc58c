"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications") on one page, plugged into `training`.

One update = step `num_envs` envs `collect_steps` times (`rollout.rollout`), append the
transitions to the on-device replay buffer (`replay`), then `gradient_steps` gradient steps, each
on a fresh uniform batch. The updates-per-env-step ratio is gradient_steps / (num_envs *
collect_steps). During the first `warmup_steps` agent steps actions are uniform in the action box
and the networks are not updated (the buffer is only filled).

Each gradient step, in this order (DrQ's order: critic, then actor and temperature, then targets):

- critic (SAC eq. 5 with the clipped double-Q of TD3, Fujimoto et al. 2018, eq. 10):
  y = r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha * log pi(a'|s')),  a' ~ pi(.|s'),
  loss = sum_i mean (Q_i(s, a) - y)^2 over the two critics;
- actor (SAC eq. 7 with the reparameterisation of eq. 11): mean(alpha * log pi(a~|s) - min_i Q_i(s, a~));
- temperature (SAC eq. 18), on log alpha: mean(alpha * (-log pi(a~|s) - target_entropy)), with
  target_entropy = target_entropy_per_dim * |A| (-|A| by default) and alpha_0 = init_temperature
  (0.1, as DrQ and DBC);
- targets: Polyak averaging with rate tau (SAC App. D).

Bootstrapping: the buffer stores the true last observation of an episode, so a time-limit
truncation bootstraps from it and only a termination zeroes the future (discount = 1 - terminated).

Policy: tanh-squashed diagonal Gaussian (`networks.TanhGaussianHead`, log-prob with the tanh
Jacobian, SAC App. C) in [-1, 1]^|A|, mapped affinely onto the env's action box. Its log-std
is soft-clamped to [log_std_min, log_std_max] = [-5, 2] by a scaled tanh (pytorch_sac / DrQ),
which bounds the entropy term and keeps gradients alive at the limits. The replay buffer stores
the policy's [-1, 1] actions, the units the critics see.

Pixels (DrQ, Kostrikov et al. 2021; DrQ-v2, Yarats et al. 2022): a CNN encoder shared by actor and
critics is trained by the critic loss only; the actor sees its features under stop-gradient, the
target critics use a Polyak-averaged copy of the encoder. obs and next_obs are augmented
independently by a random shift of up to `shift_pad` pixels (one augmentation each: K = M = 1).

Representation objectives (`representation.ObjectiveConfig`): with `objective` set (or a state
encoder, latent_dim > 0) the critic's step minimises critic_loss + objective_weight *
objective_loss over {encoder, critics, objective heads}, the objective's loss computed on the
same replay minibatch (obs, action, reward, next_obs, discount; unaugmented: each objective
augments as its paper does) or, for ACRO, on multi-step pairs (obs_t, a_t, obs_{t+k}, k) from
`replay.sample_multistep_pairs`. The actor reads the latent detached, and
`critic_trains_encoder=False` detaches it from the critic too. The objective's target encoder
(CURL's key encoder, MICo's and SimSR's target) is the critics' Polyak-averaged encoder, as
in CURL's and DBC's SAC code; the heads and the actor read the objective's `encode` (RepDIB:
the quantised latent).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from gymnax.environments import spaces

from jaxrl_suite import replay
from jaxrl_suite import rollout as rl
from jaxrl_suite.augment import random_shift
from jaxrl_suite.config import _positive_int, sweep_field, validate_network_fields
from jaxrl_suite.networks import MLP, QEnsemble, TanhGaussianHead
from jaxrl_suite.representation import ACRO_MAX_K, AUX_SALT, OffPolicyConfig, agent_encoder, aux_metrics, build_objective, multistep_batch
from jaxrl_suite.training import Agent, Trainer, make_trainer


@dataclasses.dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC hyperparameters; defaults follow SAC (Haarnoja et al. 2018, Table 1) and DrQ for pixels; replay-loop and objective fields from OffPolicyConfig."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    cnn_channels: tuple[int, ...] = (32, 32, 32)
    cnn_strides: tuple[int, ...] = (2, 1, 1)
    cnn_features: int = 50  # DrQ's feature_dim
    shift_pad: int = 4  # DrQ's random-shift padding, in pixels
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    actor_lr: float = sweep_field(3e-4)
    critic_lr: float = sweep_field(3e-4)
    alpha_lr: float = sweep_field(3e-4)
    gamma: float = sweep_field(0.99)
    tau: float = sweep_field(0.005)
    init_temperature: float = sweep_field(0.1)
    target_entropy_per_dim: float = sweep_field(-1.0)

    def validate(self) -> None:
        """Sizes positive, the buffer large enough per env, rates and coefficients in range."""
        super().validate()
        _positive_int(self, "cnn_features")
        validate_network_fields(self)
        if isinstance(self.shift_pad, bool) or not isinstance(self.shift_pad, int) or self.shift_pad < 0:
            raise ValueError(f"shift_pad={self.shift_pad!r} must be a non-negative integer")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"log_std_min={self.log_std_min!r} must be < log_std_max={self.log_std_max!r}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma!r} must be in [0, 1]")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau={self.tau!r} must be in (0, 1]")



# Named starting points; `jaxrl-suite train --agent sac --preset NAME` starts from these.
PRESETS: dict[str, SACConfig] = {
    # cartpole-balance from state on a 2-core CPU: action_repeat 8 makes an episode 125 agent
    # steps; 4 envs x 1 step and 1 gradient step per update, 20k updates = 80k agent steps
    # (640k physics steps), the first 2000 random.
    "cartpole-cpu": SACConfig(
        env="cartpole-balance",
        action_repeat=8,
        num_envs=4,
        collect_steps=1,
        gradient_steps=1,
        batch_size=128,
        buffer_size=100_000,
        warmup_steps=2000,
        hidden_sizes=(128, 128),
        num_updates=10_000,
        eval_every=1000,
        eval_episodes=8,
        actor_lr=1e-3,
        critic_lr=1e-3,
        alpha_lr=1e-3,
        tau=0.01,
    ),
    # GPU preset (issues 3 and 4): cartpole-swingup from 64 px pixels with DrQ's random shift
    # (pad 4), not run at full size yet (no GPU was lent when it was written; a test compiles it
    # on CPU with small sizes). DrQ's settings (Kostrikov et al. 2021, hyperparameter table:
    # action repeat 8 for cartpole, batch 512, lr 1e-3, hidden 1024, feature dim 50, 4 conv
    # layers of 32 channels with strides 2, 1, 1, 1, buffer 100k, 1000 seed steps, init
    # temperature 0.1, critic tau 0.01) on its 500k-physics-step budget: 4 envs x 1 step and 4
    # gradient steps per update (one gradient step per agent step, as DrQ), 15,625 updates =
    # 62.5k agent steps = 500k physics steps. Differences: one tau (0.01) for critic and encoder
    # (DrQ's encoder tau is 0.05), actor and targets updated every gradient step (DrQ: every
    # second), 64 px not 84, and no frame stack (the config has no such field; DrQ stacks 3).
    # Representation objectives go on top with overrides (`--objective dbc`, `simsr`, `curl`,
    # ...): the CNN is shared by the critics and the objective and the actor reads it detached,
    # as in DBC's SAC.
    "cartpole-swingup-pixels-gpu": SACConfig(
        env="cartpole-swingup",
        obs="pixels",
        image_size=64,
        action_repeat=8,
        num_envs=4,
        collect_steps=1,
        gradient_steps=4,
        batch_size=512,
        buffer_size=100_000,
        warmup_steps=1000,
        hidden_sizes=(1024, 1024),
        cnn_channels=(32, 32, 32, 32),
        cnn_strides=(2, 1, 1, 1),
        cnn_features=50,
        shift_pad=4,
        num_updates=15_625,
        eval_every=625,
        eval_episodes=10,
        actor_lr=1e-3,
        critic_lr=1e-3,
        alpha_lr=1e-3,
        tau=0.01,
        init_temperature=0.1,
    ),
}


class Actor(nn.Module):
    """Tanh-Gaussian policy over [-1, 1]^action_dim from features."""

    action_dim: int
    hidden_sizes: tuple[int, ...]
    activation: str
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, features: jax.Array):
        """The action distribution for a batch of features."""
        h = MLP(self.hidden_sizes, self.activation)(features)
        return TanhGaussianHead(self.action_dim, self.log_std_min, self.log_std_max)(h)


class Identity(nn.Module):
    """State observations as features (no encoder parameters)."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """obs as float32."""
        return obs.astype(jnp.float32)


@struct.dataclass
class SACState:
    """Everything SAC carries between updates."""

    params: dict[str, Any]  # {"encoder", "actor", "critic"}, plus "heads" (the objective's models) when wired
    target_params: dict[str, Any]  # {"encoder", "critic"}: Polyak averages of the online ones
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any  # over {"encoder", "critic"} (+ "heads"): the critic (and the objective) train the encoder
    alpha_opt: Any
    env: rl.RolloutState
    buffer: replay.ReplayBuffer


# the SACState fields a gradient step changes
LEARNED_FIELDS = ("params", "target_params", "log_alpha", "actor_opt", "critic_opt", "alpha_opt")


def continuous_action_box(env: Any, env_params: Any) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a Box action space as float32 arrays; any other space raises a ValueError."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Box):
        name = getattr(env, "env_id", None) or getattr(env, "name", type(env).__name__)
        detail = f"Discrete({int(space.n)})" if isinstance(space, spaces.Discrete) else type(space).__name__
        raise ValueError(f"SAC needs a continuous (Box) action space; env {name!r} has {detail}. Use ppo or dqn for discrete actions")
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape).copy()
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape).copy()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
        raise ValueError(f"SAC needs a bounded action box; got low={low}, high={high}")
    return low, high


def soft_td_target(reward, discount, next_q, next_log_prob, alpha, gamma) -> jax.Array:
    """r + gamma * discount * (min_i Q'_i(s', a') - alpha log pi(a'|s')) (SAC eq. 3 and 5, clipped double Q).

    next_q is (num_critics, B); discount is 1 - terminated, so a time-limit truncation bootstraps.
    """
    return reward + gamma * discount * (jnp.min(next_q, axis=0) - alpha * next_log_prob)


def make_agent(config: SACConfig, env: Any, env_params: Any) -> Agent:
    """SAC's init/update/act for one env; `config` supplies static sizes, `cfg` (per call) the knobs."""
    low, high = continuous_action_box(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_shape = tuple(env.observation_space(env_params).shape)
    pixels = len(obs_shape) == 3
    capacity = config.buffer_size // config.num_envs + 2  # + the provisional row and one final row
    warmup_updates = config.warmup_updates

    if pixels or config.latent_dim:
        encoder, latent_dim = agent_encoder(config, pixels)
    else:
        encoder, latent_dim = Identity(), None
    # None keeps the original program exactly (no objective terms, no extra key draws)
    objective = build_objective(config, encoder, latent_dim, action_dim, False, obs_shape, config.gamma, config.shift_pad) if config.wired else None
    multistep = objective is not None and "obs_k" in objective.requires
    actor = Actor(action_dim, config.hidden_sizes, config.activation, config.log_std_min, config.log_std_max)
    critic = QEnsemble(config.hidden_sizes, config.activation, num_critics=2)

    def encode_obs(encoder_params, heads, obs: jax.Array) -> jax.Array:
        # the objective's encode is the latent it shapes (RepDIB: quantised); else the encoder itself
        if objective is None:
            return encoder.apply(encoder_params, obs)
        return objective.encode({"encoder": encoder_params, "heads": heads}, obs)

    def to_env_action(unit_action: jax.Array) -> jax.Array:
        # affine map of the policy's (-1, 1) onto [low, high]
        return low + 0.5 * (unit_action + 1.0) * (high - low)

    def augment(key: jax.Array, obs: jax.Array) -> jax.Array:
        return random_shift(key, obs, config.shift_pad) if pixels else obs

    def optimizers(cfg: SACConfig):
        return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)

    def init(key: jax.Array, cfg: SACConfig) -> SACState:
        key_enc, key_actor, key_critic, key_env = jax.random.split(key, 4)
        env_carry = rl.reset(env, env_params, key_env, config.num_envs)
        example_obs = env_carry.obs[:1]
        if objective is None:
            enc_params, heads = encoder.init(key_enc, example_obs), None
        else:
            n = config.num_envs
            example_batch = {
                "obs": env_carry.obs, "action": jnp.zeros((n, action_dim)), "reward": jnp.zeros((n,)), "next_obs": env_carry.obs,
                "discount": jnp.ones((n,)), "obs_k": env_carry.obs, "k": jnp.ones((n,), jnp.int32),
            }
            objective_params = objective.init(key_enc, example_batch)
            enc_params, heads = objective_params["encoder"], objective_params["heads"]
        features = encode_obs(enc_params, heads, example_obs)
        params = {
            "encoder": enc_params,
            "actor": actor.init(key_actor, features),
            "critic": critic.init(key_critic, features, jnp.zeros((1, action_dim))),
        }
        critic_vars = {"encoder": params["encoder"], "critic": params["critic"]}
        if objective is not None:
            params["heads"] = critic_vars["heads"] = heads
        log_alpha = jnp.log(jnp.asarray(cfg.init_temperature, jnp.float32))
        actor_tx, critic_tx, alpha_tx = optimizers(cfg)
        example = {
            "obs": env_carry.obs[0],
            "action": jnp.zeros((action_dim,), jnp.float32),
            "reward": jnp.zeros((), jnp.float32),
            "next_obs": env_carry.obs[0],
            "terminated": jnp.zeros((), bool),
            "truncated": jnp.zeros((), bool),
        }
        return SACState(
            params=params,
            target_params={"encoder": params["encoder"], "critic": params["critic"]},
            log_alpha=log_alpha,
            actor_opt=actor_tx.init(params["actor"]),
            critic_opt=critic_tx.init(critic_vars),
            alpha_opt=alpha_tx.init(log_alpha),
            env=env_carry,
            buffer=replay.init(example, config.num_envs, capacity),
        )

    def critic_loss_fn(critic_vars, params, target_params, log_alpha, cfg: SACConfig, batch, aux_batch, key):
        key_next, key_obs, key_next_obs = jax.random.split(key, 3)
        heads = critic_vars.get("heads")
        obs = augment(key_obs, batch["obs"])
        next_obs = augment(key_next_obs, batch["next_obs"])
        # target: a' from the current policy on online features, Q' from the target encoder and critics
        next_dist = actor.apply(params["actor"], encode_obs(critic_vars["encoder"], heads, next_obs))
        next_action, next_log_prob = next_dist.sample_and_log_prob(seed=key_next)
        next_q = critic.apply(target_params["critic"], encode_obs(target_params["encoder"], heads, next_obs), next_action)
        target = jax.lax.stop_gradient(soft_td_target(batch["reward"], batch["discount"], next_q, next_log_prob, jnp.exp(log_alpha), cfg.gamma))
        features = encode_obs(critic_vars["encoder"], heads, obs)
        if not config.critic_trains_encoder:
            features = jax.lax.stop_gradient(features)
        q = critic.apply(critic_vars["critic"], features, batch["action"])
        loss = jnp.sum(jnp.mean(jnp.square(q - target[None]), axis=1))
        if objective is None:
            return loss, (obs, jnp.mean(q), {})
        # the objective's target encoder is the critics' Polyak-averaged one (CURL's, DBC's SAC code)
        objective_loss, aux = objective.loss(
            {"encoder": critic_vars["encoder"], "heads": heads},
            {"encoder": target_params["encoder"], "heads": heads},
            aux_batch,
            jax.random.fold_in(key, AUX_SALT),
        )
        total = loss + cfg.objective_weight * objective_loss
        return total, (obs, jnp.mean(q), {"critic_loss": loss, **aux_metrics(objective_loss, aux)})

    def actor_loss_fn(actor_params, features, critic_params, log_alpha, key):
        dist = actor.apply(actor_params, features)
        action, log_prob = dist.sample_and_log_prob(seed=key)
        q = jnp.min(critic.apply(critic_params, features, action), axis=0)
        loss = jnp.mean(jnp.exp(log_alpha) * log_prob - q)
        return loss, log_prob

    def gradient_step(state: SACState, cfg: SACConfig, batch, aux_batch, key):
        key_critic, key_actor = jax.random.split(key)
        actor_tx, critic_tx, alpha_tx = optimizers(cfg)
        critic_vars = {name: state.params[name] for name in ("encoder", "critic", "heads") if name in state.params}
        (critic_loss, (obs_aug, q_mean, objective_metrics)), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            critic_vars, state.params, state.target_params, state.log_alpha, cfg, batch, aux_batch, key_critic
        )
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, critic_vars)
        critic_vars = optax.apply_updates(critic_vars, updates)

        # the actor sees the (just updated) encoder's features under stop-gradient (DrQ-v2)
        features = jax.lax.stop_gradient(encode_obs(critic_vars["encoder"], critic_vars.get("heads"), obs_aug))
        (actor_loss, log_prob), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.params["actor"], features, critic_vars["critic"], state.log_alpha, key_actor
        )
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.params["actor"])
        actor_params = optax.apply_updates(state.params["actor"], updates)

        target_entropy = cfg.target_entropy_per_dim * action_dim
        entropy_gap = jax.lax.stop_gradient(-log_prob - target_entropy)
        alpha_loss, grad = jax.value_and_grad(lambda la: jnp.mean(jnp.exp(la) * entropy_gap))(state.log_alpha)
        updates, alpha_opt = alpha_tx.update(grad, state.alpha_opt, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, updates)

        online = {"encoder": critic_vars["encoder"], "critic": critic_vars["critic"]}
        target_params = optax.incremental_update(online, state.target_params, cfg.tau)
        new_state = state.replace(
            params={**critic_vars, "actor": actor_params},
            target_params=target_params,
            log_alpha=log_alpha,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            alpha_opt=alpha_opt,
        )
        metrics = {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "temperature": jnp.exp(log_alpha),
            "entropy": -jnp.mean(log_prob),
            "q_mean": q_mean,
            **objective_metrics,  # with an objective: critic_loss without it, objective_loss and its aux
        }
        return new_state, metrics

    def update(state: SACState, key: jax.Array, cfg: SACConfig, step: jax.Array):
        key_roll, key_sample, key_learn = jax.random.split(key, 3)
        warm = step < warmup_updates

        def policy(obs, act_key):
            key_pi, key_random = jax.random.split(act_key)
            dist = actor.apply(state.params["actor"], encode_obs(state.params["encoder"], state.params.get("heads"), obs))
            unit = jnp.where(warm, jax.random.uniform(key_random, (obs.shape[0], action_dim), minval=-1.0, maxval=1.0), dist.sample(seed=key_pi))
            return to_env_action(unit), {"unit_action": unit}

        env_carry, traj = rl.rollout(env, env_params, policy, state.env, key_roll, config.collect_steps)
        buffer = replay.add_steps(
            state.buffer,
            {
                "obs": traj.obs,
                "action": traj.extras["unit_action"],
                "reward": traj.reward,
                "next_obs": traj.next_obs,
                "terminated": traj.terminated,
                "truncated": traj.truncated,
            },
        )
        # one sampler call for all gradient steps: validity masks are computed once per update
        sample = replay.sample_transitions(buffer, key_sample, config.gradient_steps * config.batch_size)
        if objective is None:
            aux_sample = {}
        elif multistep:
            pairs = replay.sample_multistep_pairs(buffer, jax.random.fold_in(key_sample, AUX_SALT), config.gradient_steps * config.batch_size, ACRO_MAX_K)
            aux_sample = multistep_batch(pairs, sample)
        else:
            aux_sample = {name: sample[name] for name in ("obs", "action", "reward", "next_obs", "discount")}
        batches = jax.tree.map(lambda x: x.reshape((config.gradient_steps, config.batch_size) + x.shape[1:]), (sample, aux_sample))

        def learn(carry, inputs):
            # the scan carries only what learning changes, not the buffer
            learned, metrics = gradient_step(state.replace(**carry), cfg, *inputs)
            return {name: getattr(learned, name) for name in LEARNED_FIELDS}, metrics

        before = {name: getattr(state, name) for name in LEARNED_FIELDS}
        after, metrics = jax.lax.scan(learn, before, (*batches, jax.random.split(key_learn, config.gradient_steps)))
        # warm-up: the networks stay as they were; the buffer and the env carry advance either way
        kept = jax.tree.map(lambda old, new: jnp.where(warm, old, new), before, after)
        new_state = state.replace(buffer=buffer, env=env_carry, **kept)
        num_finished = traj.done.sum()
        stats = {"train_return": jnp.where(num_finished > 0, traj.episode_return.sum() / jnp.maximum(num_finished, 1), jnp.nan)}
        return new_state, jax.tree.map(jnp.mean, metrics), stats

    def act(state: SACState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        dist = actor.apply(state.params["actor"], encode_obs(state.params["encoder"], state.params.get("heads"), obs))
        unit = dist.bijector.forward(dist.distribution.mean()) if deterministic else dist.sample(seed=key)
        return to_env_action(unit)

    def encode(state: SACState, obs: jax.Array) -> jax.Array:
        # what actor and critics read: the latent, or the raw state vector when there is no encoder
        return encode_obs(state.params["encoder"], state.params.get("heads"), obs).reshape(obs.shape[0], -1)

    return Agent(init=init, update=update, act=act, env_steps_per_update=config.num_envs * config.collect_steps, encode=encode)


def make_train(config: SACConfig) -> Trainer:
    """SAC's Trainer for a config: validates, builds the env, refuses discrete actions, wires the agent in."""
    if not isinstance(config, SACConfig):
        raise ValueError(f"SAC needs a SACConfig, got {type(config).__name__}")
    config.validate()
    env, env_params = rl.make_env(config)
    return make_trainer(config, lambda member_params: make_agent(config, env, member_params), env, env_params)

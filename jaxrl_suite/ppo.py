"""Proximal Policy Optimization (Schulman et al. 2017) on one page, plugged into `training`.

One update = collect `num_envs x num_steps` transitions (`rollout.rollout`), compute GAE
advantages (Schulman et al. 2016, eq. 16), then `update_epochs` passes of `num_minibatches`
shuffled minibatches on the clipped surrogate (PPO eq. 7) plus a value loss and an entropy bonus
(PPO eq. 9). Details after Huang et al. 2022 ("The 37 implementation details of PPO"):
per-minibatch advantage normalisation, optional clipped value loss, global gradient clipping,
Adam eps 1e-5, linear learning-rate annealing, observation normalisation with running
statistics, reward scaling by the running std of the discounted return.

Bootstrapping: delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t), where s'_t is the true
successor (`info["final_observation"]` at an episode end), and the GAE recursion is cut at every
episode end (terminated or truncated). A time-limit truncation therefore bootstraps from the value
of its final observation, and only a true termination counts the future as zero.

Discrete actions use a categorical policy, continuous ones an unbounded diagonal Gaussian whose
samples are clipped to the action box before the env step (the log-prob is of the unclipped
sample). State observations go to separate actor and critic MLPs; pixel observations to one
shared CNN encoder followed by the two MLP heads.

Representation objectives (`representation.ObjectiveConfig`): with `objective` set (or a state
encoder, latent_dim > 0) the network is split into an encoder (the CNN, or an MLP on states)
and the actor-critic MLPs on its latent, and each minibatch minimises the PPO loss plus
objective_weight * the objective's loss on the same minibatch's (obs, action as the env
received it, reward, next obs, discount); next obs is the rollout's true successor
(`info["final_observation"]` at an episode end). `critic_trains_encoder=False` detaches the
latent from the PPO loss. PPO has no target network, so the objective's target
(CURL's key encoder, MICo's and SimSR's target) is an EMA of the encoder and heads at rate
`objective_tau` per minibatch step. ACRO is refused: its multi-step windows would have to come
from within the rollout, which the minibatches shuffle away.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_suite import rollout as rl
from jaxrl_suite.config import _positive_int, sweep_field, validate_network_fields
from jaxrl_suite.networks import MLP, CategoricalHead, CNNEncoder, GaussianHead, RunningNorm, ValueHead
from jaxrl_suite.objectives import ema_update
from jaxrl_suite.representation import AUX_SALT, ONLINE_REFUSED, ObjectiveConfig, agent_encoder, aux_metrics, build_objective
from jaxrl_suite.training import Agent, Trainer, make_trainer


@dataclasses.dataclass(frozen=True)
class PPOConfig(ObjectiveConfig):
    """PPO hyperparameters; defaults are the continuous-control settings of PureJaxRL/CleanRL; objective fields from ObjectiveConfig."""

    num_envs: int = 16
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    cnn_strides: tuple[int, ...] = (2, 2, 1)
    cnn_features: int = 64
    anneal_lr: bool = True
    clip_value_loss: bool = True
    normalize_obs: bool = False
    normalize_reward: bool = False
    learning_rate: float = sweep_field(3e-4)
    gamma: float = sweep_field(0.99)
    gae_lambda: float = sweep_field(0.95)
    clip_eps: float = sweep_field(0.2)
    vf_coef: float = sweep_field(0.5)
    ent_coef: float = sweep_field(0.0)
    max_grad_norm: float = sweep_field(0.5)
    init_log_std: float = sweep_field(0.0)
    objective_tau: float = sweep_field(0.01)  # EMA rate of the objective's target (no PPO target network to share)

    refused_objectives = {
        **ONLINE_REFUSED,
        "acro": "acro needs multi-step windows (o_t, o_t+k) from one episode, and PPO's minibatches are shuffled single "
        "transitions; use acro with sac or dqn (replay windows) or offline",
    }

    def validate(self) -> None:
        """Sizes positive, the batch divisible into minibatches, coefficients in range."""
        super().validate()
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "cnn_features"):
            _positive_int(self, name)
        validate_network_fields(self)
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {self.num_envs} * {self.num_steps} = {batch} must be divisible by "
                f"num_minibatches={self.num_minibatches}"
            )
        if self.normalize_obs and self.obs == "pixels":
            raise ValueError("normalize_obs=True is for state observations; pixels are scaled to [0, 1] by the CNN")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} must be > 0")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1]")
        for name in ("clip_eps", "vf_coef", "ent_coef", "max_grad_norm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        if not 0.0 < self.objective_tau <= 1.0:
            raise ValueError(f"objective_tau={self.objective_tau!r} must be in (0, 1]")


# Named starting points; `jaxrl-suite train --preset NAME` starts from these and flags override.
PRESETS: dict[str, PPOConfig] = {
    # cartpole-balance from state on a 2-core CPU: action_repeat 4 makes the 1000-step episode 250
    # agent steps; 16 envs x 64 steps per update, 150 updates = 153.6k agent steps (614k physics
    # steps). Found by a small hand sweep (8 seeds each): without reward normalisation, or with
    # 4 epochs x 4 minibatches at lr 1e-3, seeds plateau near 650; this setting put 8/8 seeds >= 977.
    "cartpole-cpu": PPOConfig(
        env="cartpole-balance",
        action_repeat=4,
        num_envs=16,
        num_steps=64,
        update_epochs=8,
        num_minibatches=8,
        num_updates=150,
        eval_every=15,
        eval_episodes=8,
        learning_rate=2e-3,
        gamma=0.99,
        normalize_obs=True,
        normalize_reward=True,
        init_log_std=-0.5,
    ),
    # gymnax's discrete CartPole-v1: PureJaxRL's batch shape with a 10x learning rate for a short
    # budget (51k steps); measured final returns 490, 500, 475, 500 on 4 seeds (max 500)
    "gymnax-cartpole": PPOConfig(
        env="gymnax:CartPole-v1", num_envs=4, num_steps=128, update_epochs=4, num_minibatches=4, num_updates=100,
        eval_every=10, learning_rate=2.5e-3, ent_coef=0.01, clip_value_loss=True,
    ),
    # exo-gridworld from 16 px pixels on a 2-core CPU (the small pixel task): a two-layer
    # CNN (16, 16 channels; 16 -> 7 -> 5 px, 5 x 5 x 16 features) to 64, 16 envs x 64 steps, 30
    # updates = 30.7k agent steps, gamma 0.95 for the sparse goal reward (episodes are cut at 100
    # steps). Measured (experiments/pixels-online.toml): 8/8 seeds at success 1.0 over 16
    # evaluation episodes (random policy 0.4), evaluation episodes of 4.9-6.4 steps.
    "gridworld-pixels-cpu": PPOConfig(
        env="exo-gridworld", obs="pixels", image_size=16, num_envs=16, num_steps=64, update_epochs=4, num_minibatches=4,
        hidden_sizes=(64,), activation="relu", cnn_channels=(16, 16), cnn_strides=(2, 1), cnn_features=64,
        num_updates=30, eval_every=5, eval_episodes=16, learning_rate=1e-3, ent_coef=0.01, gamma=0.95,
    ),
    # GPU preset (issue 3): cartpole-swingup from 64 px pixels, not run at full size yet (no GPU was
    # lent when it was written; a test compiles it on CPU with small sizes). Action repeat 8 as
    # DrQ/PlaNet use for cartpole (125 agent steps per episode); 64 envs x 128 steps = 8192
    # transitions per update, 4 epochs of 8 minibatches of 1024; 240 updates = 1.97M agent steps
    # (15.7M physics steps), about 4x DrQ's 500k-physics-step budget since PPO is on-policy.
    # CNN 32-64-64 with stride 2 (64 -> 31 -> 15 -> 7 px) to 256 features; reward scaling and
    # init_log_std as the cartpole-cpu preset. No frame stack: the config has no such field, so the
    # policy sees one frame and cannot read velocities from it (DrQ stacks 3).
    "cartpole-swingup-pixels-gpu": PPOConfig(
        env="cartpole-swingup", obs="pixels", image_size=64, action_repeat=8, num_envs=64, num_steps=128, update_epochs=4,
        num_minibatches=8, hidden_sizes=(256,), activation="relu", cnn_channels=(32, 64, 64), cnn_strides=(2, 2, 2),
        cnn_features=256, num_updates=240, eval_every=10, eval_episodes=16, learning_rate=3e-4, normalize_reward=True,
        init_log_std=-0.5,
    ),
}


class ActorCritic(nn.Module):
    """Policy distribution and value from an observation (MLPs for state, shared CNN for pixels)."""

    discrete: bool
    action_dim: int
    pixels: bool
    hidden_sizes: tuple[int, ...]
    activation: str
    cnn_channels: tuple[int, ...]
    cnn_strides: tuple[int, ...]
    cnn_features: int
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        """(distribution, value) for a batch of observations."""
        x = CNNEncoder(self.cnn_channels, self.cnn_strides, features=self.cnn_features)(obs) if self.pixels else obs
        h_pi = MLP(self.hidden_sizes, self.activation)(x)
        head = CategoricalHead(self.action_dim) if self.discrete else GaussianHead(self.action_dim, init_log_std=self.init_log_std)
        value = ValueHead()(MLP(self.hidden_sizes, self.activation)(x))
        return head(h_pi), value


@struct.dataclass
class PPOState:
    """Everything PPO carries between updates."""

    params: Any
    opt_state: Any
    env: rl.RolloutState
    obs_norm: RunningNorm
    return_norm: RunningNorm  # running std of the discounted return, for reward scaling
    discounted_return: jax.Array  # (num_envs,) running discounted return per env
    objective_target: Any = None  # EMA of {"encoder", "heads"} when an objective is wired in (else None: no leaves)




def gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Generalised advantage estimates and value targets over a (T, N) trajectory (Schulman et al. 2016, eq. 16)."""
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values

    def backward(advantage, inputs):
        delta, ended = inputs
        advantage = delta + gamma * lam * (1.0 - ended) * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, done), reverse=True)
    return advantages, advantages + values


def make_agent(config: PPOConfig, env: Any, env_params: Any) -> Agent:
    """PPO's init/update/act for one env; `config` supplies static sizes, `cfg` (per call) the knobs."""
    discrete = rl.check_action_space(env, env_params, "ppo", rl.ACTION_KINDS) == "discrete"
    action_dim = rl.action_size(env, env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    pixels = len(obs_shape) == 3
    batch_size = config.num_envs * config.num_steps
    minibatch_size = batch_size // config.num_minibatches

    def network(cfg: PPOConfig, on_latent: bool = False) -> ActorCritic:
        # on_latent: the actor-critic MLPs alone, reading the separate encoder's latent (objective wired in)
        return ActorCritic(
            discrete, action_dim, pixels and not on_latent, config.hidden_sizes, config.activation, config.cnn_channels,
            config.cnn_strides, config.cnn_features, init_log_std=cfg.init_log_std,
        )

    objective = None
    if config.wired:  # else the original program, untouched
        encoder, latent_dim = agent_encoder(config, pixels)
        objective = build_objective(config, encoder, latent_dim, action_dim, discrete, obs_shape, config.gamma)

    def apply_net(params, cfg: PPOConfig, obs: jax.Array):
        """(distribution, value) of (normalised) observations, through the separate encoder when wired."""
        if objective is None:
            return network(cfg).apply(params, obs)
        latent = objective.encode({"encoder": params["encoder"], "heads": params["heads"]}, obs)
        if not config.critic_trains_encoder:
            latent = jax.lax.stop_gradient(latent)
        return network(cfg, on_latent=True).apply(params["policy"], latent)

    def optimizer(cfg: PPOConfig, step: jax.Array) -> optax.GradientTransformation:
        # annealing within the update (not per minibatch): lr falls linearly to 0 at num_updates
        frac = 1.0 - step.astype(jnp.float32) / config.num_updates if config.anneal_lr else 1.0
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate * frac, eps=1e-5))

    def prep(state: PPOState, obs: jax.Array) -> jax.Array:
        return state.obs_norm.normalize(obs) if config.normalize_obs else obs

    def init(key: jax.Array, cfg: PPOConfig) -> PPOState:
        """Network, optimiser state, reset envs and normaliser statistics."""
        key_net, key_env = jax.random.split(key)
        env_carry = rl.reset(env, env_params, key_env, config.num_envs)
        objective_target = None
        if objective is None:
            params = network(cfg).init(key_net, jnp.zeros((1,) + obs_shape, env_carry.obs.dtype))
        else:
            key_objective, key_policy = jax.random.split(key_net)
            n = config.num_envs
            example_batch = {
                "obs": env_carry.obs, "action": traj_action_example(n), "reward": jnp.zeros((n,)), "next_obs": env_carry.obs,
                "discount": jnp.ones((n,)),
            }
            objective_target = objective.init(key_objective, example_batch)
            latent = objective.encode(objective_target, env_carry.obs[:1])
            params = {**objective_target, "policy": network(cfg, on_latent=True).init(key_policy, latent)}
        obs_norm = RunningNorm.create(obs_shape if not pixels else (1,))
        if config.normalize_obs:
            obs_norm = obs_norm.update(env_carry.obs)
        return PPOState(
            params=params,
            opt_state=optimizer(cfg, jnp.zeros((), jnp.int32)).init(params),
            env=env_carry,
            obs_norm=obs_norm,
            return_norm=RunningNorm.create(()),
            discounted_return=jnp.zeros((config.num_envs,), jnp.float32),
            objective_target=objective_target,
        )

    def traj_action_example(n: int) -> jax.Array:
        return jnp.zeros((n,), jnp.int32) if discrete else jnp.zeros((n, action_dim), jnp.float32)

    def loss_fn(params, cfg: PPOConfig, batch: dict[str, jax.Array], objective_target=None):
        """Clipped surrogate + value loss - entropy bonus on one minibatch (PPO eq. 9), plus the weighted objective."""
        dist, value = apply_net(params, cfg, batch["obs"])
        log_prob = dist.log_prob(batch["action"])
        ratio = jnp.exp(log_prob - batch["log_prob"])
        adv = batch["advantage"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        # clipped surrogate, PPO eq. 7 (negated: we minimise)
        pg_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv).mean()
        v_err = jnp.square(value - batch["target"])
        if config.clip_value_loss:
            v_clipped = batch["value"] + jnp.clip(value - batch["value"], -cfg.clip_eps, cfg.clip_eps)
            v_err = jnp.maximum(v_err, jnp.square(v_clipped - batch["target"]))
        v_loss = 0.5 * v_err.mean()
        entropy = dist.entropy().mean()
        total = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy  # PPO eq. 9
        # approx KL: the low-variance estimator (r - 1) - log r (Schulman 2020, "Approximating KL divergence")
        log_ratio = log_prob - batch["log_prob"]
        aux = {
            "loss": total,
            "policy_loss": pg_loss,
            "value_loss": v_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(jnp.exp(log_ratio) - 1.0 - log_ratio),
            "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32)),
        }
        if objective is not None:
            objective_batch = {name: batch[name] for name in ("obs", "reward", "next_obs", "discount")}
            objective_batch["action"] = batch["action_taken"]
            online = {"encoder": params["encoder"], "heads": params["heads"]}
            objective_loss, objective_aux = objective.loss(online, objective_target, objective_batch, batch["objective_key"])
            total = total + cfg.objective_weight * objective_loss
            aux.update({"loss": total, **aux_metrics(objective_loss, objective_aux)})
        return total, aux

    def update(state: PPOState, key: jax.Array, cfg: PPOConfig, step: jax.Array):
        """Collect a rollout, compute GAE, run the minibatch epochs; returns (state, losses, stats)."""
        key_roll, key_perm = jax.random.split(key)

        def policy(obs, act_key):
            dist, value = apply_net(state.params, cfg, prep(state, obs))
            action = dist.sample(seed=act_key)
            return action, {"log_prob": dist.log_prob(action), "value": value}

        env_carry, traj = rl.rollout(env, env_params, policy, state.env, key_roll, config.num_steps)
        terminated = traj.terminated.astype(jnp.float32)
        done = traj.done.astype(jnp.float32)

        rewards, return_norm, disc = traj.reward, state.return_norm, state.discounted_return
        if config.normalize_reward:
            # scale (not shift) rewards by the running std of the discounted return (VecNormalize)
            def accumulate(running, inputs):
                reward, ended = inputs
                running = running * cfg.gamma + reward
                return running * (1.0 - ended), running

            disc, returns = jax.lax.scan(accumulate, disc, (traj.reward, done))
            return_norm = return_norm.update(returns)
            rewards = rewards / jnp.sqrt(return_norm.var + 1e-8)

        obs = prep(state, traj.obs)
        _, next_values = apply_net(state.params, cfg, prep(state, traj.next_obs))
        advantages, targets = gae(rewards, traj.extras["value"], next_values, terminated, done, cfg.gamma, cfg.gae_lambda)
        data = {
            "obs": obs,
            "action": traj.action,
            "log_prob": traj.extras["log_prob"],
            "value": traj.extras["value"],
            "advantage": advantages,
            "target": targets,
        }
        if objective is not None:
            # the objective sees the action the env received (clipped into the box) and the raw reward
            data.update(
                action_taken=rl.to_env_action(env, env_params, traj.action),
                next_obs=prep(state, traj.next_obs),
                reward=traj.reward,
                discount=1.0 - terminated,
            )
        data = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), data)
        tx = optimizer(cfg, step)

        def epoch(carry, epoch_key):
            def minibatch(carry, mb):
                params, opt_state, target = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, cfg, mb, target)
                updates, opt_state = tx.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                if objective is not None:
                    target = ema_update(target, {"encoder": params["encoder"], "heads": params["heads"]}, cfg.objective_tau)
                return (params, opt_state, target), aux

            perm = jax.random.permutation(epoch_key, batch_size)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), data)
            if objective is not None:
                shuffled["objective_key"] = jax.random.split(jax.random.fold_in(epoch_key, AUX_SALT), config.num_minibatches)
            return jax.lax.scan(minibatch, carry, shuffled)

        (params, opt_state, objective_target), aux = jax.lax.scan(
            epoch, (state.params, state.opt_state, state.objective_target), jax.random.split(key_perm, config.update_epochs)
        )
        obs_norm = state.obs_norm.update(traj.obs) if config.normalize_obs else state.obs_norm
        new_state = PPOState(
            params=params, opt_state=opt_state, env=env_carry, obs_norm=obs_norm, return_norm=return_norm, discounted_return=disc,
            objective_target=objective_target,
        )
        finished = traj.done
        num_finished = finished.sum()
        stats = {
            "train_return": jnp.where(num_finished > 0, traj.episode_return.sum() / jnp.maximum(num_finished, 1), jnp.nan),
        }
        return new_state, jax.tree.map(jnp.mean, aux), stats

    def act(state: PPOState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Batch of actions: the mode (argmax / mean) when deterministic, else a sample."""
        # act never reads the sweepable init_log_std (it lives in params after init), so the static config serves
        dist, _ = apply_net(state.params, config, prep(state, obs))
        return dist.mode() if deterministic else dist.sample(seed=key)

    def encode(state: PPOState, obs: jax.Array) -> jax.Array:
        """The latent the heads read: the objective's encoder, else the CNN (pixels) or the actor's MLP torso (states)."""
        x = prep(state, obs)
        if objective is not None:
            return objective.encode({"encoder": state.params["encoder"], "heads": state.params["heads"]}, x)
        torso = CNNEncoder if pixels else MLP
        _, captured = network(config).apply(
            state.params, x, capture_intermediates=lambda module, method: method == "__call__" and isinstance(module, torso)
        )
        return captured["intermediates"][f"{torso.__name__}_0"]["__call__"][0]

    return Agent(init=init, update=update, act=act, env_steps_per_update=batch_size, encode=encode)


def make_train(config: PPOConfig) -> Trainer:
    """PPO's Trainer for a config: validates, builds the env, wires the agent into the loop."""
    if not isinstance(config, PPOConfig):
        raise ValueError(f"PPO needs a PPOConfig, got {type(config).__name__}")
    config.validate()
    env, env_params = rl.make_env(config)
    return make_trainer(config, lambda member_params: make_agent(config, env, member_params), env, env_params)

"""A distractor-robust Dreamer in the spirit of HRSSM (Sun et al. 2024, "Learning Latent Dynamic Robust Representations for World Models").

The Dreamer agent of `dreamer.py` plus four pieces, each a config switch (booleans static, so
they shape the program; coefficients sweepable, so an ablation is a vmapped sweep that sets a
coefficient or the mask ratio to 0):

- `masking`: spatio-temporal cube masking of the online encoder's input. Images are cut into a
  grid of `patch_size` x `patch_size` patches (state vectors into single features); each patch is
  hidden (set to 0) with probability `mask_ratio`, and the same mask holds for `mask_every`
  consecutive frames, so a hidden cube spans space and time (HRSSM Sec. 4.1: ratio 0.5, a new
  mask every 4 frames).
- `ema_target`: a target encoder + RSSM, the EMA (rate `target_rate`, 0.05) of the online ones,
  that filters the clean frames; without it the target branch is the online model under
  stop-gradient.
- `latent_recon`: || n(P(feat_masked)) - n(P_bar(feat_target)) ||^2 with P a bias-free linear
  projection to `proj_dim` (32) and P_bar its target copy, n the l2 normalisation (HRSSM Eq. 6).
- `simsr`: SimSR's loss (Zang et al. 2022, Sec. 4) on RSSM features: for every step t of the
  window and all pairs (i, j) of the batch, Huber(1 - n(f_i) . n(f_j), sg[(1 - g)|r_i - r_j| / k
  + g (1 - n(f'_i) . n(f'_j))]) with f the online features at t, f' the target features at t+1,
  g = `simsr_gamma` and k = action_repeat (rewards per physics step lie in [0, 1]); the (1 - g)
  factor keeps the target's fixed point <= 1, inside the cosine distance's range [0, 2] (the
  reward scaling of Zang et al., NeurIPS 2023).

Pixel reconstruction (`pixel_recon`) is off by default, as in HRSSM. For state observations that
default does not learn at CPU budgets (measured, see PRESETS): the state presets keep the decoder
and set mask_ratio 0, so there the robust pieces are the EMA target, latent reconstruction and SimSR.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrl_suite import losses
from jaxrl_suite import rollout as rl
from jaxrl_suite.config import _positive_int, sweep_field
from jaxrl_suite.training import Trainer, make_trainer
from jaxrl_suite.world_models import dreamer
from jaxrl_suite.world_models.rssm import RSSMState

TARGET_MODULES = ("encoder", "rssm", "proj")


@dataclasses.dataclass(frozen=True)
class RobustDreamerConfig(dreamer.DreamerConfig):
    """Dreamer's config plus HRSSM's switches (static) and coefficients (sweepable)."""

    pixel_recon: bool = False
    masking: bool = True
    mask_every: int = 4
    patch_size: int = 8
    ema_target: bool = True
    latent_recon: bool = True
    proj_dim: int = 32
    simsr: bool = True
    mask_ratio: float = sweep_field(0.5)
    target_rate: float = sweep_field(0.05)
    latent_recon_coef: float = sweep_field(1.0)
    simsr_coef: float = sweep_field(1.0)
    simsr_gamma: float = sweep_field(0.9)

    def validate(self) -> None:
        """Dreamer's checks plus the robust pieces' sizes and ranges."""
        super().validate()
        for name in ("mask_every", "patch_size", "proj_dim"):
            _positive_int(self, name)
        for name in ("masking", "ema_target", "latent_recon", "simsr", "pixel_recon"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        if self.obs == "pixels" and self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide image_size={self.image_size}")
        for name in ("mask_ratio", "target_rate", "simsr_gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be in [0, 1]")
        for name in ("latent_recon_coef", "simsr_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")


def from_dreamer(base: dreamer.DreamerConfig, **changes: Any) -> RobustDreamerConfig:
    """The robust config with every Dreamer field of `base` (pixel_recon left to the robust default) plus `changes`."""
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name != "pixel_recon"}
    return RobustDreamerConfig(**{**fields, **changes})


# Pixel presets keep HRSSM's settings; state presets keep the decoder and set mask_ratio 0 (see
# the measurement below).
PRESETS: dict[str, RobustDreamerConfig] = {
    name: from_dreamer(base) if base.obs == "pixels" else from_dreamer(base, pixel_recon=True, mask_ratio=0.0)
    for name, base in dreamer.PRESETS.items()
}
# The CPU comparison: state observations with the noise distractor. Measured on one
# seed per setting at 600 updates (cartpole-balance + noise, vmapped coefficient sweep, H100):
# without the decoder no setting learned (final evals ~190-270, random-like); with the decoder,
# mask_ratio 0.5 also stayed near random (~190-350, reward loss 1.7 vs 0.8), because hiding half
# of a 21-feature state vector hides the state itself (patches of an image are redundant, features
# are not), while mask_ratio 0 with the EMA target, latent reconstruction and SimSR learned
# (final ~590-740, plain Dreamer ~510-620 on 3 seeds). So for state observations the preset keeps
# the decoder and turns masking down; the pixel presets keep HRSSM's settings.
PRESETS["cartpole-noise-cpu"] = dataclasses.replace(PRESETS["cartpole-cpu"], distractor="noise")


def cube_mask(key: jax.Array, shape: tuple[int, ...], pixels: bool, ratio: jax.Array, every: int, patch: int) -> jax.Array:
    """Boolean keep-mask broadcastable to time-major observations of `shape` (T, B, ...): True = visible.

    One uniform draw per (block of `every` frames, batch element, patch); a patch is hidden where
    the draw is below `ratio`, so the expected hidden fraction is `ratio` and a hidden patch stays
    hidden for the whole block.
    """
    steps, batch = shape[:2]
    blocks = -(-steps // every)
    if pixels:
        height, width = shape[2], shape[3]
        noise = jax.random.uniform(key, (blocks, batch, height // patch, width // patch))
        keep = noise >= ratio
        keep = jnp.repeat(jnp.repeat(keep, patch, axis=2), patch, axis=3)[..., None]  # (blocks, B, H, W, 1)
    else:
        keep = jax.random.uniform(key, (blocks, batch) + shape[2:]) >= ratio
    return jnp.repeat(keep, every, axis=0)[:steps]


@dataclasses.dataclass(frozen=True)
class RobustExtension:
    """The HRSSM pieces as a `dreamer.Extension` (static switches from the config)."""

    config: RobustDreamerConfig
    pixels: bool
    reward_scale: float  # 1 / action_repeat: rewards per physics step

    @property
    def projection(self) -> nn.Dense:
        """P: bias-free linear map of RSSM features to proj_dim."""
        return nn.Dense(self.config.proj_dim, use_bias=False)

    def init(self, key: jax.Array, world_model: dreamer.WorldModel, wm_params: dict, example_feat: jax.Array):
        """The projection's params, and the target: a copy of encoder, RSSM and projection (or {} without EMA)."""
        extra = {"proj": self.projection.init(key, example_feat)} if self.config.latent_recon else {}
        if not self.config.ema_target:
            return extra, {}
        online = {**wm_params, **extra}
        return extra, {name: online[name] for name in TARGET_MODULES if name in online}

    def encoder_input(self, obs: jax.Array, key: jax.Array, cfg: RobustDreamerConfig) -> jax.Array:
        """Observations with hidden cubes set to 0 (unchanged without masking)."""
        if not self.config.masking:
            return obs
        keep = cube_mask(key, obs.shape, self.pixels, cfg.mask_ratio, self.config.mask_every, self.config.patch_size)
        return jnp.where(keep, obs, jnp.zeros((), obs.dtype))

    def _target_params(self, wm_params: dict, target: Any) -> dict:
        source = target if self.config.ema_target else {name: wm_params[name] for name in TARGET_MODULES if name in wm_params}
        return jax.lax.stop_gradient(source)

    def loss(self, world_model: dreamer.WorldModel, wm_params: dict, target: Any, data: dict, posts: RSSMState, key: jax.Array, cfg):
        """Latent reconstruction and SimSR terms on a window (the masked posteriors are `posts`)."""
        if not (self.config.latent_recon or self.config.simsr):
            return jnp.zeros((), jnp.float32), {}
        target_params = self._target_params(wm_params, target)
        target_posts, _ = world_model.observe(
            wm_params, data["obs"], data["prev_actions"], key, encoder_params=target_params["encoder"], rssm_params=target_params["rssm"]
        )
        target_feat = jax.lax.stop_gradient(target_posts.feat)
        feat = posts.feat
        total = jnp.zeros((), jnp.float32)
        aux = {}
        if self.config.latent_recon:
            online = losses.l2_normalize(self.projection.apply(wm_params["proj"], feat))
            goal = losses.l2_normalize(self.projection.apply(target_params["proj"], target_feat))
            latent_recon = jnp.mean(jnp.sum(jnp.square(online - goal), axis=-1))
            total = total + cfg.latent_recon_coef * latent_recon
            aux["latent_recon_loss"] = latent_recon
        if self.config.simsr:
            reward = data["reward"] * self.reward_scale

            def per_step(f, f_next, r):
                distance = losses.cosine_distance_matrix(f, f)
                goal = (1.0 - cfg.simsr_gamma) * losses.abs_difference_matrix(r) + cfg.simsr_gamma * losses.cosine_distance_matrix(f_next, f_next)
                return losses.huber(distance, jax.lax.stop_gradient(goal))

            simsr = jnp.mean(jax.vmap(per_step)(feat[:-1], target_feat[1:], reward))
            total = total + cfg.simsr_coef * simsr
            aux["simsr_loss"] = simsr
        return total, aux

    def update_target(self, target: Any, wm_params: dict, cfg: RobustDreamerConfig) -> Any:
        """EMA of the online encoder, RSSM and projection at rate `target_rate` ({} without EMA)."""
        if not self.config.ema_target:
            return target
        online = {name: wm_params[name] for name in target}
        return optax.incremental_update(online, target, cfg.target_rate)


def make_train(config: RobustDreamerConfig) -> Trainer:
    """The robust variant's Trainer: Dreamer with the HRSSM extension."""
    if not isinstance(config, RobustDreamerConfig):
        raise ValueError(f"dreamer-robust needs a RobustDreamerConfig, got {type(config).__name__}")
    config.validate()
    env, env_params = rl.make_env(config)
    pixels = len(env.observation_space(env_params).shape) == 3
    extension = RobustExtension(config, pixels, 1.0 / config.action_repeat)
    return make_trainer(config, lambda member_params: dreamer.make_agent(config, env, member_params, extension), env, env_params)

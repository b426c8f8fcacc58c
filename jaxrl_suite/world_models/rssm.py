"""Recurrent state-space model with categorical latents (DreamerV2/V3, Hafner et al. 2021, 2023).

State s_t = (h_t, z_t): a deterministic GRU state h_t and a stochastic state z_t of S categorical
variables with K classes each, carried as (straight-through) one-hot vectors.

    h_t = GRU(h_{t-1}, MLP([z_{t-1}, a_{t-1}]))          sequence model
    p(z_t | h_t)                                           prior (dynamics predictor)
    q(z_t | h_t, e_t)                                      posterior (encoder embedding e_t)

Every categorical mixes 1% uniform into its softmax (DreamerV3, "unimix"), so no class has
probability zero and the KL stays bounded; samples are one-hot with the straight-through
gradient one_hot + p - sg(p) (Bengio et al. 2013; DreamerV2, Sec. 2). The features the heads
read are feat = [h, flatten(z)].

`observe` filters a (T, B) sequence of embeddings and previous actions into posteriors and
priors; `imagine` rolls the prior forward under a policy. Both are `jax.lax.scan`s over the
module's `obs_step` / `img_step`, so they jit and vmap like everything else.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_suite.networks import activation, orthogonal


@struct.dataclass
class RSSMState:
    """One latent state: deterministic h (..., D), one-hot stochastic z (..., S, K) and its log-probs (..., S, K)."""

    deter: jax.Array
    stoch: jax.Array
    logits: jax.Array  # normalised log-probabilities after the uniform mix

    @property
    def feat(self) -> jax.Array:
        """[h, flatten(z)], what every head reads (..., D + S * K)."""
        return jnp.concatenate([self.deter, self.stoch.reshape(self.stoch.shape[:-2] + (-1,))], axis=-1)


def initial_state(batch_shape: tuple[int, ...], deter_size: int, stoch_size: int, classes: int) -> RSSMState:
    """The all-zero state an episode (and every replayed window) starts from; uniform logits."""
    return RSSMState(
        deter=jnp.zeros(batch_shape + (deter_size,), jnp.float32),
        stoch=jnp.zeros(batch_shape + (stoch_size, classes), jnp.float32),
        logits=jnp.full(batch_shape + (stoch_size, classes), -jnp.log(classes), jnp.float32),
    )


def unimix_logits(raw: jax.Array, unimix: float | jax.Array) -> jax.Array:
    """log((1 - u) softmax(raw) + u / K): the 1% uniform mix of DreamerV3 (Sec. "Robust predictions")."""
    probs = jax.nn.softmax(raw, axis=-1)
    probs = (1.0 - unimix) * probs + unimix / raw.shape[-1]
    return jnp.log(probs)


def straight_through_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """A one-hot sample of each categorical, with gradients of its probabilities (straight-through)."""
    index = jax.random.categorical(key, logits, axis=-1)
    one_hot = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
    probs = jnp.exp(logits)
    return one_hot + probs - jax.lax.stop_gradient(probs)


def categorical_kl(lhs_logits: jax.Array, rhs_logits: jax.Array) -> jax.Array:
    """KL[lhs || rhs] of normalised log-probs (..., S, K), summed over the S latents (shape (...))."""
    lhs_probs = jnp.exp(lhs_logits)
    return jnp.sum(lhs_probs * (lhs_logits - rhs_logits), axis=(-2, -1))


def kl_losses(post_logits: jax.Array, prior_logits: jax.Array, free_bits: float | jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(dynamics loss, representation loss, raw KL), each (...): DreamerV3 Eq. 5 with free bits.

    dyn = max(free, KL[sg q || p]) trains the prior towards the posterior, rep = max(free,
    KL[q || sg p]) the posterior towards the prior; the clamp applies to the KL summed over all
    S latents (not per latent), so below `free_bits` nats neither gradient flows.
    """
    kl = categorical_kl(post_logits, prior_logits)
    dyn = categorical_kl(jax.lax.stop_gradient(post_logits), prior_logits)
    rep = categorical_kl(post_logits, jax.lax.stop_gradient(prior_logits))
    return jnp.maximum(dyn, free_bits), jnp.maximum(rep, free_bits), kl


class RSSM(nn.Module):
    """The sequence model, prior and posterior; call `obs_step` / `img_step` through `apply(method=...)`."""

    deter_size: int = 128
    stoch_size: int = 8  # S categoricals
    classes: int = 8  # K classes each
    hidden: int = 128
    unimix: float = 0.01
    act: str = "silu"

    def setup(self):
        """Layers: input MLP and GRU (sequence model), prior head, posterior head; LayerNorm before each activation."""
        self.img_in = nn.Dense(self.hidden, use_bias=False)
        self.img_in_norm = nn.LayerNorm()
        # flax's default recurrent init is a LAPACK QR, which deadlocks XLA's 2-thread CPU pool when
        # batched over vmapped members (seen: a 5-seed run stuck in sgeqrf/sorgqr inside the probe's
        # random-agent init); networks.orthogonal draws the same distribution with matmuls only
        self.gru = nn.GRUCell(self.deter_size, recurrent_kernel_init=orthogonal(1.0))
        self.prior_hidden = nn.Dense(self.hidden, use_bias=False)
        self.prior_norm = nn.LayerNorm()
        self.prior_out = nn.Dense(self.stoch_size * self.classes)
        self.post_hidden = nn.Dense(self.hidden, use_bias=False)
        self.post_norm = nn.LayerNorm()
        self.post_out = nn.Dense(self.stoch_size * self.classes)

    def _logits(self, raw: jax.Array) -> jax.Array:
        raw = raw.reshape(raw.shape[:-1] + (self.stoch_size, self.classes))
        return unimix_logits(raw, self.unimix)

    def img_step(self, state: RSSMState, action: jax.Array, key: jax.Array) -> RSSMState:
        """Prior step: h_t from (h_{t-1}, z_{t-1}, a_{t-1}), then z_t ~ p(z_t | h_t)."""
        act = activation(self.act)
        stoch = state.stoch.reshape(state.stoch.shape[:-2] + (-1,))
        x = act(self.img_in_norm(self.img_in(jnp.concatenate([stoch, action], axis=-1))))
        deter, _ = self.gru(state.deter, x)
        logits = self._logits(self.prior_out(act(self.prior_norm(self.prior_hidden(deter)))))
        return RSSMState(deter=deter, stoch=straight_through_sample(key, logits), logits=logits)

    def obs_step(self, state: RSSMState, action: jax.Array, embed: jax.Array, key: jax.Array) -> tuple[RSSMState, RSSMState]:
        """(posterior, prior) at t: the prior step, then z_t ~ q(z_t | h_t, e_t) from the same h_t."""
        key_prior, key_post = jax.random.split(key)
        prior = self.img_step(state, action, key_prior)
        act = activation(self.act)
        x = act(self.post_norm(self.post_hidden(jnp.concatenate([prior.deter, embed], axis=-1))))
        logits = self._logits(self.post_out(x))
        post = RSSMState(deter=prior.deter, stoch=straight_through_sample(key_post, logits), logits=logits)
        return post, prior

    def __call__(self, state: RSSMState, action: jax.Array, embed: jax.Array, key: jax.Array) -> tuple[RSSMState, RSSMState]:
        """Same as `obs_step` (so `init` creates every layer)."""
        return self.obs_step(state, action, embed, key)


def observe(
    rssm: RSSM, params, embeds: jax.Array, prev_actions: jax.Array, key: jax.Array, start: RSSMState | None = None
) -> tuple[RSSMState, RSSMState]:
    """Posteriors and priors (T, B, ...) for time-major embeddings (T, B, E) and previous actions (T, B, A).

    prev_actions[t] is a_{t-1} (zeros at a window's first step); `start` defaults to the zero state.
    """
    batch = embeds.shape[1:-1]
    if start is None:
        start = initial_state(batch, rssm.deter_size, rssm.stoch_size, rssm.classes)

    def step(state, inputs):
        embed, action, step_key = inputs
        post, prior = rssm.apply(params, state, action, embed, step_key, method=RSSM.obs_step)
        return post, (post, prior)

    keys = jax.random.split(key, embeds.shape[0])
    _, (posts, priors) = jax.lax.scan(step, start, (embeds, prev_actions, keys))
    return posts, priors


def imagine(
    rssm: RSSM,
    params,
    policy: Callable[[RSSMState, jax.Array], jax.Array],
    start: RSSMState,
    key: jax.Array,
    horizon: int,
) -> tuple[RSSMState, jax.Array]:
    """Roll the prior `horizon` steps from `start` (B, ...) under `policy(state, key) -> action features`.

    Returns the states s_0..s_H stacked (H + 1, B, ...) with s_0 = start, and the actions
    a_0..a_{H-1} (H, B, A) where a_t was taken in s_t.
    """

    def step(state, step_key):
        key_act, key_img = jax.random.split(step_key)
        action = policy(state, key_act)
        next_state = rssm.apply(params, state, action, key_img, method=RSSM.img_step)
        return next_state, (next_state, action)

    _, (states, actions) = jax.lax.scan(step, start, jax.random.split(key, horizon))
    states = jax.tree.map(lambda s0, rest: jnp.concatenate([s0[None], rest], axis=0), start, states)
    return states, actions

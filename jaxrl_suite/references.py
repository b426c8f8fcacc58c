"""Per-task reference returns for normalised scores: score = (R - random) / (expert - random).

Random: measured with `measure_random_return` under this protocol: no distractor, default
params, uniformly random actions drawn afresh every agent step, 100 episodes from
`jax.random.PRNGKey(0)`, full episodes (the env's own limit), undiscounted return; measured per
action repeat, since holding a random action for k physics steps changes what it achieves.
The table below was filled by running `python -m jaxrl_suite.references` (jax 0.10.2, CPU).

Expert: for the DMC-style tasks, whose per-step reward lies in [0, 1] over 1000 physics steps,
the expert reference is the upper bound 1000 (not a trained agent's return); for gymnax
CartPole-v1 it is the episode limit 500 (reward 1 per step). Say so when quoting scores.
"""

from __future__ import annotations

import jax

# (env name, action_repeat) -> mean return of the uniform random policy (protocol above)
RANDOM_RETURN: dict[tuple[str, int], float] = {
    ("acrobot-swingup", 1): 3.8,
    ("acrobot-swingup", 4): 3.7,
    ("acrobot-swingup", 8): 3.6,
    ("cartpole-balance", 1): 365.1,
    ("cartpole-balance", 4): 300.3,
    ("cartpole-balance", 8): 279.3,
    ("cartpole-swingup", 1): 19.5,
    ("cartpole-swingup", 4): 58.5,
    ("cartpole-swingup", 8): 100.6,
    ("exo-gridworld", 1): 0.4,
    ("exo-gridworld", 4): 0.5,
    ("exo-gridworld", 8): 0.3,
    ("pendulum-swingup", 1): 0.3,
    ("pendulum-swingup", 4): 0.4,
    ("pendulum-swingup", 8): 0.4,
    ("point-mass-easy", 1): 5.9,
    ("point-mass-easy", 4): 9.6,
    ("point-mass-easy", 8): 7.1,
    ("reacher-easy", 1): 35.6,
    ("reacher-easy", 4): 43.0,
    ("reacher-easy", 8): 49.4,
    ("gymnax:CartPole-v1", 1): 24.2,
}

# env name -> expert reference and what it is
EXPERT_RETURN: dict[str, tuple[float, str]] = {
    "cartpole-balance": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "cartpole-swingup": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "pendulum-swingup": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "acrobot-swingup": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "reacher-easy": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "point-mass-easy": (1000.0, "upper bound: reward <= 1 per physics step, 1000 steps"),
    "gymnax:CartPole-v1": (500.0, "upper bound: episode limit 500 at reward 1 per step"),
    "exo-gridworld": (1.0, "upper bound: reward 1 on reaching the goal, which ends the episode"),
}


def _base_name(env: str) -> str:
    """'cartpole-balance-v1' -> 'cartpole-balance' (gymnax names unchanged)."""
    if env.startswith("gymnax:"):
        return env
    base, _, version = env.rpartition("-v")
    return base if base and version.isdigit() else env


def random_return(env: str, action_repeat: int = 1) -> float:
    """The stored random-policy return of a task at an action repeat; unknown pairs list the known ones."""
    key = (_base_name(env), action_repeat)
    if key not in RANDOM_RETURN:
        raise ValueError(f"no random reference for env={env!r}, action_repeat={action_repeat}; known: {sorted(RANDOM_RETURN)}")
    return RANDOM_RETURN[key]


def expert_return(env: str) -> float:
    """The expert reference return of a task (see EXPERT_RETURN for what each one is)."""
    name = _base_name(env)
    if name not in EXPERT_RETURN:
        raise ValueError(f"no expert reference for env={env!r}; known: {sorted(EXPERT_RETURN)}")
    return EXPERT_RETURN[name][0]


def normalized_score(env: str, episode_return: float, action_repeat: int = 1) -> float:
    """(return - random) / (expert - random): 0 is the random policy, 1 the expert reference."""
    low, high = random_return(env, action_repeat), expert_return(env)
    return float((episode_return - low) / (high - low))


def measure_random_return(env_name: str, action_repeat: int = 1, num_episodes: int = 100, seed: int = 0) -> float:
    """Mean undiscounted return of uniformly random actions over `num_episodes` full episodes (the protocol above)."""
    from types import SimpleNamespace

    from jaxrl_suite.evaluation import episode_limit, evaluate
    from jaxrl_suite.rollout import make_env

    spec = SimpleNamespace(env=env_name, obs="state", distractor="none", difficulty="none", image_size=64, action_repeat=action_repeat)
    env, params = make_env(spec)
    space = env.action_space(params)

    def act(obs, key):
        return jax.vmap(space.sample)(jax.random.split(key, obs.shape[0]))

    run = jax.jit(lambda key: evaluate(env, params, act, key, num_episodes, episode_limit(env, params)))
    return float(run(jax.random.PRNGKey(seed))["return_mean"])


if __name__ == "__main__":
    from jaxrl_suite.envs import TASKS

    for name in sorted(TASKS):
        for repeat in (1, 4, 8):
            print(f'    ("{name}", {repeat}): {measure_random_return(name, repeat):.1f},', flush=True)
    print(f'    ("gymnax:CartPole-v1", 1): {measure_random_return("gymnax:CartPole-v1", 1):.1f},')

"""EnvRunner: one actor that steps a vector of environments with the latest policy weights.

    Algorithm (driver)                               EnvRunner actor (its own process)
    ──────────────────                               ─────────────────────────────────
    weights_ref = ray.put(weights)   once per iteration
    runner.sample.remote(weights_ref, T) ──────────► set_weights; T steps of N envs:
                                                       inputs = pi(obs)  (one matmul for all N)
                                                       actions ~ dist(inputs)
                                                       each env steps; an ended episode resets
    fragment ◄──────────────────────────────────────── arrays shaped (T, N, ...) + finished episodes

State (per runner): the N envs, the current observation of each (episodes continue across calls, as
RLlib's do), the running return and length of each env's episode, and the policy's weights.  The
runner keeps no learner state, so a restarted runner (actor ``max_restarts``) is as good as new once
the next ``sample`` hands it the weights.

A fragment holds ``obs``, ``next_obs`` (the observation after the step: the *final* one where an
episode ended, before its reset), ``actions``, ``action_dist_inputs`` (the sampling distribution:
logits, or Gaussian means and log-stds), ``rewards``,
``terminateds``, ``truncateds``, ``episodes`` (return, length) finished during the call, and the
call's wall and CPU seconds (``sample_s``, ``sample_cpu_s``; on a busy machine they differ).  The
learner computes values and advantages from these in one batch.  The N envs are stepped in a plain
loop rather than a gymnasium vector env: a reset happens in the same step, with the final
observation kept for the truncation bootstrap, and custom envs need no vector wrapper.
"""
from __future__ import annotations

import os
import time

import numpy as np

from miniray.rllib.core.blas import one_blas_thread
from miniray.rllib.core.distributions import distribution_for
from miniray.rllib.core.policy import Policy
from miniray.rllib.env.env_context import make_env


def space_dims(env) -> tuple[int, object]:
    """(flat observation size, the action distribution); a clear error for spaces we do not handle."""
    import gymnasium

    obs_space = env.observation_space
    dist = distribution_for(env.action_space)
    if isinstance(obs_space, gymnasium.spaces.Box):
        return int(np.prod(obs_space.shape)), dist
    if isinstance(obs_space, gymnasium.spaces.Discrete):
        return int(obs_space.n), dist
    raise ValueError(f"miniray.rllib handles Box or Discrete observations; this env's is {obs_space}")


def flatten_obs(env, obs, check: bool = False) -> np.ndarray:
    """The policy's input for one observation (one-hot for Discrete); ``check``: a clear error for
    an observation that does not fit the env's space (a user's, not the env's own)."""
    import gymnasium

    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Discrete):
        if check and (np.ndim(obs) != 0 or not 0 <= int(obs) - space.start < space.n):
            raise ValueError(f"This env's observations are single integers in {space}; got {obs!r}")
        out = np.zeros(int(space.n))
        out[int(obs) - space.start] = 1.0
        return out
    out = np.asarray(obs, dtype=np.float64).ravel()
    if check and out.size != int(np.prod(space.shape)):
        raise ValueError(f"This env's observations have {int(np.prod(space.shape))} values "
                         f"({space}); got an observation with {out.size}")
    return out


class EnvRunner:
    """``worker_index`` 1..n for remote runners, 0 for the driver's own (``num_env_runners=0``)."""

    def __init__(self, env_creator, env_config=None, num_envs: int = 1, model=None, seed=None,
                 worker_index: int = 0, num_workers: int = 0):
        self.envs = [make_env(env_creator, env_config, worker_index, i, num_workers) for i in range(num_envs)]
        self.obs_dim, self.dist = space_dims(self.envs[0])
        self.policy = Policy(self.obs_dim, model=model, dist=self.dist)
        seeds = np.random.SeedSequence(None if seed is None else [seed, worker_index])
        self.rng = np.random.default_rng(seeds)
        env_seeds = seeds.generate_state(num_envs)
        self.obs = np.stack([self._reset(env, int(s)) for env, s in zip(self.envs, env_seeds)])
        self.ep_return = np.zeros(num_envs)
        self.ep_len = np.zeros(num_envs, dtype=np.int64)

    def _reset(self, env, seed=None) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        return flatten_obs(env, obs)

    def sample(self, weights: np.ndarray | None, num_steps: int, explore: bool = True) -> dict:
        """``num_steps`` steps of every env (``num_steps * N`` env steps in all)."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        with one_blas_thread():
            fragment = self._sample(weights, num_steps, explore)
        fragment["sample_s"], fragment["sample_cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
        return fragment

    def _sample(self, weights, num_steps: int, explore: bool) -> dict:
        if weights is not None:
            self.policy.set_weights(weights)
        T, N, d, dist = int(num_steps), len(self.envs), self.obs_dim, self.dist
        obs, next_obs = np.zeros((T, N, d)), np.zeros((T, N, d))
        actions = np.zeros((T, N, *dist.action_shape), dtype=dist.action_dtype)
        inputs = np.zeros((T, N, dist.input_dim))
        rewards, terminateds, truncateds = np.zeros((T, N)), np.zeros((T, N), bool), np.zeros((T, N), bool)
        episodes = []
        for t in range(T):
            obs[t] = self.obs
            actions[t], inputs[t] = self.policy.compute_actions(self.obs, self.rng, explore)
            for i, env in enumerate(self.envs):
                o, r, term, trunc, _ = env.step(self.env_action(env, actions[t, i]))
                o = next_obs[t, i] = flatten_obs(env, o)
                rewards[t, i], terminateds[t, i], truncateds[t, i] = r, term, trunc
                self.ep_return[i] += r
                self.ep_len[i] += 1
                if term or trunc:
                    episodes.append((float(self.ep_return[i]), int(self.ep_len[i])))
                    self.ep_return[i], self.ep_len[i] = 0.0, 0
                    o = self._reset(env)
                self.obs[i] = o
        return {"obs": obs, "next_obs": next_obs, "actions": actions, "action_dist_inputs": inputs,
                "rewards": rewards, "terminateds": terminateds, "truncateds": truncateds,
                "episodes": episodes, "env_steps": T * N}

    def run_episodes(self, weights, num_episodes: int, explore: bool = False) -> list:
        """(return, length) of ``num_episodes`` whole episodes on a fresh env (evaluation)."""
        if weights is not None:
            self.policy.set_weights(weights)
        env, out = self.envs[0], []
        for _ in range(num_episodes):
            o, done, ret, n = self._reset(env), False, 0.0, 0
            while not done:
                a, _ = self.policy.compute_actions(o[None], self.rng, explore)
                o, r, term, trunc, _ = env.step(self.env_action(env, a[0]))
                o, ret, n, done = flatten_obs(env, o), ret + r, n + 1, term or trunc
            out.append((ret, n))
        self.obs[0], self.ep_return[0], self.ep_len[0] = self._reset(env), 0.0, 0
        return out

    def env_action(self, env, action):
        """What ``env.step`` takes: an int, or the Gaussian's draw clipped to the Box's bounds (the
        fragment keeps the unclipped draw, whose probability the learner needs)."""
        if self.dist.action_shape == ():
            return int(action)
        space = env.action_space
        return np.clip(action, space.low, space.high).astype(space.dtype)

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        for env in self.envs:
            env.close()

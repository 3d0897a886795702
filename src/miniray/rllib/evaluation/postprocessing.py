"""Advantages from a trajectory: generalised advantage estimation (GAE) and discounted returns.

    delta_t = r_t + gamma * V(s_t+1) - V(s_t)                       (one-step TD error)
    A_t     = delta_t + gamma * lambda * A_t+1, reset at episode ends  (walked backwards in time)
    value target_t = A_t + V(s_t)

``next_values[t]`` is V(s_t+1) as the runner saw it: 0 where the episode *terminated* (no future),
V(final observation) where it was *truncated* (a time limit: the future was cut, not ended), and
V(last observation) at the end of a fragment.  ``dones[t]`` (terminated or truncated) stops the
recursion so one episode's advantage never leaks into the previous one.  Time is axis 0; any further
axes (one column per env of a vector) are computed side by side.  lambda_=1 gives the Monte-Carlo
return minus the baseline (REINFORCE with a baseline); lambda_=0 the one-step TD error.
"""
from __future__ import annotations

import numpy as np


def compute_gae(rewards, values, next_values, dones, gamma: float = 0.99, lambda_: float = 1.0):
    """Advantages A_t (same shape as ``rewards``)."""
    rewards, values, next_values = (np.asarray(a, dtype=np.float64) for a in (rewards, values, next_values))
    not_done = 1.0 - np.asarray(dones, dtype=np.float64)
    deltas = rewards + gamma * next_values - values
    advantages = np.zeros_like(deltas)
    running = np.zeros_like(deltas[0])
    for t in range(len(deltas) - 1, -1, -1):
        running = deltas[t] + gamma * lambda_ * not_done[t] * running
        advantages[t] = running
    return advantages


def discount_cumsum(x, gamma: float):
    """y_t = x_t + gamma x_t+1 + gamma^2 x_t+2 + ... (a whole episode's returns-to-go)."""
    x = np.asarray(x, dtype=np.float64)
    out, running = np.zeros_like(x), 0.0
    for t in range(len(x) - 1, -1, -1):
        running = x[t] + gamma * running
        out[t] = running
    return out

"""Action distributions: what the policy network's outputs mean, with their gradients.

    Discrete(n)      ──► Categorical(n):    inputs = n logits,            action = an int
    Box(shape=(k,))  ──► DiagGaussian(k):   inputs = k means | k log-stds, action = k floats

The policy MLP outputs ``input_dim`` numbers per row (RLlib's ``action_dist_inputs``).  Each method
works on a batch (rows) and returns a value per row with its gradient with respect to the inputs,
so a loss is written once for both (``algorithms/ppo/ppo.py``):

    logp(inputs, actions)   log pi(a|s)                      and  d/d inputs
    entropy(inputs)         H(pi(.|s))                       and  d/d inputs
    kl(old, inputs)         KL(pi_old(.|s) || pi(.|s))       and  d/d inputs (of the new one)

Categorical:  d logp/dz = onehot(a) - softmax(z);  dH/dz = -p (log p + H);  dKL/dz = p - p_old.
DiagGaussian (per dim, u = (a - mu)/sigma):  d logp/dmu = u/sigma, d logp/dlog sigma = u^2 - 1;
H = log sigma + log(2 pi e)/2;  KL = log(s/s_old) + (s_old^2 + (mu_old - mu)^2)/(2 s^2) - 1/2.
tests/test_rllib_core.py checks every gradient against finite differences.
"""
from __future__ import annotations

import math

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Categorical:
    def __init__(self, n: int):
        self.n = self.input_dim = int(n)
        self.action_shape, self.action_dtype = (), np.int64

    def sample(self, logits, rng):
        """The Gumbel-max trick: argmax of logits + Gumbel noise is a draw from softmax(logits)."""
        return np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=-1)

    def greedy(self, logits):
        return np.argmax(logits, axis=-1)

    def logp(self, logits, actions):
        lp = log_softmax(logits)
        rows = np.arange(len(actions))
        grad = -np.exp(lp)
        grad[rows, actions] += 1.0
        return lp[rows, actions], grad

    def entropy(self, logits):
        lp = log_softmax(logits)
        p = np.exp(lp)
        h = -(p * lp).sum(axis=-1)
        return h, -p * (lp + h[:, None])

    def kl(self, old_logits, logits):
        old_lp, lp = log_softmax(old_logits), log_softmax(logits)
        old_p = np.exp(old_lp)
        return (old_p * (old_lp - lp)).sum(axis=-1), np.exp(lp) - old_p

    def __repr__(self):
        return f"Categorical({self.n})"


class DiagGaussian:
    _HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

    def __init__(self, k: int):
        self.k, self.input_dim = int(k), 2 * int(k)
        self.action_shape, self.action_dtype = (int(k),), np.float64

    def _split(self, inputs):
        return inputs[:, :self.k], inputs[:, self.k:]

    def sample(self, inputs, rng):
        mu, log_std = self._split(inputs)
        return mu + np.exp(log_std) * rng.standard_normal(mu.shape)

    def greedy(self, inputs):
        return self._split(inputs)[0].copy()

    def logp(self, inputs, actions):
        mu, log_std = self._split(inputs)
        std = np.exp(log_std)
        u = (actions - mu) / std
        logp = (-0.5 * u * u - log_std - self._HALF_LOG_2PI).sum(axis=-1)
        return logp, np.concatenate([u / std, u * u - 1.0], axis=-1)

    def entropy(self, inputs):
        _, log_std = self._split(inputs)
        h = (log_std + 0.5 + self._HALF_LOG_2PI).sum(axis=-1)
        return h, np.concatenate([np.zeros_like(log_std), np.ones_like(log_std)], axis=-1)

    def kl(self, old_inputs, inputs):
        (mu_o, ls_o), (mu, ls) = self._split(old_inputs), self._split(inputs)
        var, var_o = np.exp(2 * ls), np.exp(2 * ls_o)
        spread = var_o + (mu_o - mu) ** 2
        kl = (ls - ls_o + spread / (2 * var) - 0.5).sum(axis=-1)
        return kl, np.concatenate([(mu - mu_o) / var, 1.0 - spread / var], axis=-1)

    def __repr__(self):
        return f"DiagGaussian({self.k})"


def distribution_for(action_space):
    """The distribution for a gymnasium action space; a clear error for the others."""
    import gymnasium

    if isinstance(action_space, gymnasium.spaces.Discrete):
        return Categorical(action_space.n)
    if isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 1:
        return DiagGaussian(action_space.shape[0])
    raise ValueError(f"miniray.rllib handles Discrete actions and 1-D Box actions; this env's are "
                     f"{action_space}. Flatten or discretise the actions with a gymnasium wrapper.")

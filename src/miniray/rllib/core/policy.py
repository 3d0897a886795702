"""The policy: two MLPs on one flat parameter vector, and the action distribution they feed.

    obs (B, obs_dim) ──► pi MLP ──► dist inputs (B, input_dim) ──► dist ──► sample / most likely
                    └──► vf MLP ──► value  (B,)

    params = [ pi's parameters | vf's parameters ]      (one vector: what the learner updates,
                                                         what the env runners receive)

``forward`` keeps both tapes; ``backward(d_inputs, d_values)`` turns the loss's gradients with
respect to the distribution's inputs and the values into one gradient vector for the optimizer.
Separate networks for the policy and the value (RLlib's ``vf_share_layers=False``).  The
distribution is Categorical (logits) for discrete actions and DiagGaussian (means and log-stds,
both from the network) for Box actions.
"""
from __future__ import annotations

import numpy as np

from miniray.rllib.core.distributions import Categorical
from miniray.rllib.core.mlp import MLP, num_params

DEFAULT_MODEL = {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh", "vf_share_layers": False}


def model_config(model: dict | None) -> dict:
    """RLlib's model dict with our defaults filled in; unknown or unsupported keys say so."""
    model = {**DEFAULT_MODEL, **(model or {})}
    unknown = set(model) - set(DEFAULT_MODEL)
    if unknown:
        raise ValueError(f"model= keys {sorted(unknown)} are not supported; miniray.rllib's model takes "
                         f"{sorted(DEFAULT_MODEL)}")
    if model["vf_share_layers"]:
        raise ValueError("vf_share_layers=True is not supported: miniray.rllib's policy and value "
                         "function are separate MLPs; leave it False")
    return model


class Policy:
    """``dist``: the action distribution (``core/distributions.py``); ``num_actions`` alone means
    ``Categorical(num_actions)``."""

    def __init__(self, obs_dim: int, num_actions: int | None = None, model: dict | None = None,
                 seed: int | None = None, dist=None, dtype=np.float64):
        self.model = model_config(model)
        hidden, act = list(self.model["fcnet_hiddens"]), self.model["fcnet_activation"]
        self.dist = dist if dist is not None else Categorical(num_actions)
        self.obs_dim = int(obs_dim)
        pi_sizes = [self.obs_dim, *hidden, self.dist.input_dim]
        vf_sizes = [self.obs_dim, *hidden, 1]
        self._split = num_params(pi_sizes)
        self.params = np.zeros(self._split + num_params(vf_sizes), dtype)
        self.pi = MLP(pi_sizes, act, self.params[:self._split])
        self.vf = MLP(vf_sizes, act, self.params[self._split:])
        rng = np.random.default_rng(seed)
        self.pi.init(rng, out_scale=0.01)   # near-uniform actions (or mean 0, std 1) at the start
        self.vf.init(rng, out_scale=1.0)

    def forward(self, obs: np.ndarray):
        """(action distribution inputs, values) for a batch of observations, kept for ``backward``."""
        return self.pi.forward(obs), self.vf.forward(obs)[:, 0]

    def backward(self, d_inputs: np.ndarray, d_values: np.ndarray) -> np.ndarray:
        return np.concatenate([self.pi.backward(d_inputs), self.vf.backward(d_values[:, None])])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """The action distribution's inputs (logits for discrete actions)."""
        return self.pi.forward(obs, keep=False)

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.vf.forward(obs, keep=False)[:, 0]

    def compute_actions(self, obs: np.ndarray, rng: np.random.Generator | None, explore: bool = True):
        """(actions, distribution inputs): sampled when ``explore``, else the most likely action."""
        inputs = self.logits(obs)
        actions = self.dist.sample(inputs, rng) if explore else self.dist.greedy(inputs)
        return actions, inputs

    def get_weights(self) -> np.ndarray:
        return self.params.copy()

    def set_weights(self, weights: np.ndarray) -> None:
        if weights.shape != self.params.shape:
            raise ValueError(f"weights of shape {weights.shape} do not fit this policy's "
                             f"{self.params.shape} (same model= and env on both sides?)")
        self.params[...] = weights

"""The policy: two MLPs on one flat parameter vector, and the categorical distribution.

    obs (B, obs_dim) ──► pi MLP ──► logits (B, num_actions) ──► softmax ──► sample / argmax
                    └──► vf MLP ──► value  (B,)

    params = [ pi's parameters | vf's parameters ]      (one vector: what the learner updates,
                                                         what the env runners receive)

``forward`` keeps both tapes; ``backward(d_logits, d_values)`` turns the loss's gradients with
respect to the logits and values into one gradient vector for the optimizer.  Separate networks for
the policy and the value (RLlib's ``vf_share_layers=False``); discrete actions only.
"""
from __future__ import annotations

import numpy as np

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


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sample_actions(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row, drawn from softmax(logits) (the Gumbel-max trick: argmax of logits + noise)."""
    return np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=-1)


class Policy:
    def __init__(self, obs_dim: int, num_actions: int, model: dict | None = None,
                 seed: int | None = None, dtype=np.float64):
        self.model = model_config(model)
        hidden, act = list(self.model["fcnet_hiddens"]), self.model["fcnet_activation"]
        self.obs_dim, self.num_actions = int(obs_dim), int(num_actions)
        pi_sizes = [self.obs_dim, *hidden, self.num_actions]
        vf_sizes = [self.obs_dim, *hidden, 1]
        self._split = num_params(pi_sizes)
        self.params = np.zeros(self._split + num_params(vf_sizes), dtype)
        self.pi = MLP(pi_sizes, act, self.params[:self._split])
        self.vf = MLP(vf_sizes, act, self.params[self._split:])
        rng = np.random.default_rng(seed)
        self.pi.init(rng, out_scale=0.01)   # near-uniform actions at the start
        self.vf.init(rng, out_scale=1.0)

    def forward(self, obs: np.ndarray):
        """(logits, values) for a batch of observations, kept for ``backward``."""
        return self.pi.forward(obs), self.vf.forward(obs)[:, 0]

    def backward(self, d_logits: np.ndarray, d_values: np.ndarray) -> np.ndarray:
        return np.concatenate([self.pi.backward(d_logits), self.vf.backward(d_values[:, None])])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        return self.pi.forward(obs, keep=False)

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.vf.forward(obs, keep=False)[:, 0]

    def compute_actions(self, obs: np.ndarray, rng: np.random.Generator | None, explore: bool = True):
        """(actions, logits): sampled when ``explore``, else the most likely action."""
        logits = self.logits(obs)
        actions = sample_actions(logits, rng) if explore else np.argmax(logits, axis=-1)
        return actions, logits

    def get_weights(self) -> np.ndarray:
        return self.params.copy()

    def set_weights(self, weights: np.ndarray) -> None:
        if weights.shape != self.params.shape:
            raise ValueError(f"weights of shape {weights.shape} do not fit this policy's "
                             f"{self.params.shape} (same model= and env on both sides?)")
        self.params[...] = weights


def entropy_and_grad(logp_all: np.ndarray):
    """Per-row entropy H = -sum p log p of softmax(logits), and dH/dlogits = -p (log p + H)."""
    p = np.exp(logp_all)
    entropy = -(p * logp_all).sum(axis=-1)
    return entropy, -p * (logp_all + entropy[:, None])


def one_hot(actions: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(actions), n))
    out[np.arange(len(actions)), actions] = 1.0
    return out

"""The Learner: turns env runners' fragments into a train batch and updates the policy with Adam.

    fragments (T, N, ...) ──► build_batch: V(obs), V(next_obs) in one pass each; GAE per env column;
                              flatten to B = sum(T * N) rows; standardise the advantages
                          ──► update: num_epochs x shuffled minibatches:
                                 inputs, values = policy.forward(obs[mb])    (inputs: the logits)
                                 stats, d_inputs, d_values = loss_fn(dist, inputs, values, mb, coeffs)
                                 grad = policy.backward(d_inputs, d_values); clip; adam.step
                          ──► stats averaged over minibatches (RLlib's learners/default_policy/...)

The algorithm supplies ``loss_fn`` (PPO's clipped surrogate, PG's plain policy gradient) and its
coefficients.  The same class runs in the driver (``num_learners=0``, RLlib's default) or as an actor
(``num_learners=1``: ``Learner.update`` then shows in the timeline as its own row).
State: the policy (its flat weights), the Adam moments, a shuffling RNG, and the adaptive
``kl_coeff`` (PPO with ``use_kl_loss``).
"""
from __future__ import annotations

import numpy as np

from miniray.rllib.core.blas import one_blas_thread
from miniray.rllib.core.distributions import Categorical
from miniray.rllib.core.mlp import Adam
from miniray.rllib.core.policy import Policy
from miniray.rllib.evaluation.postprocessing import compute_gae


class Learner:
    def __init__(self, obs_dim: int, dist, config: dict, loss_fn, seed=None):
        """``dist``: the action distribution (``core/distributions.py``), or a number of discrete actions."""
        self.config, self.loss_fn = dict(config), loss_fn
        dist = Categorical(dist) if isinstance(dist, int) else dist
        self.policy = Policy(obs_dim, model=config.get("model"), seed=seed, dist=dist)
        self.optimizer = Adam(len(self.policy.params), lr=float(config["lr"]))
        self.rng = np.random.default_rng(None if seed is None else [seed, 99])
        self.coeffs = {k: config[k] for k in ("clip_param", "vf_clip_param", "vf_loss_coeff",
                                              "entropy_coeff", "kl_coeff", "use_kl_loss") if k in config}

    # -- batch --------------------------------------------------------------------------------
    def build_batch(self, fragments: list[dict]) -> dict:
        gamma, lambda_ = float(self.config["gamma"]), float(self.config["lambda"])
        parts = []
        for f in fragments:
            T, N, d = f["obs"].shape
            values = self.policy.values(f["obs"].reshape(-1, d)).reshape(T, N)
            next_values = self.policy.values(f["next_obs"].reshape(-1, d)).reshape(T, N)
            next_values = np.where(f["terminateds"], 0.0, next_values)
            dones = f["terminateds"] | f["truncateds"]
            adv = compute_gae(f["rewards"], values, next_values, dones, gamma, lambda_)
            parts.append({"obs": f["obs"].reshape(-1, d),
                          "actions": f["actions"].reshape(T * N, *f["actions"].shape[2:]),
                          "action_dist_inputs": f["action_dist_inputs"].reshape(T * N, -1),
                          "advantages": adv.reshape(-1),
                          "value_targets": (adv + values).reshape(-1), "vf_preds": values.reshape(-1)})
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        adv = batch["advantages"]
        batch["advantages"] = (adv - adv.mean()) / max(1e-4, adv.std())
        return batch

    # -- update -------------------------------------------------------------------------------
    def update(self, fragments: list[dict]) -> dict:
        """One iteration's learning on these fragments; returns the mean loss stats."""
        if not fragments:
            raise ValueError("Learner.update got no fragments (every env runner failed this iteration)")
        with one_blas_thread():
            return self._update(fragments)

    def _update(self, fragments: list[dict]) -> dict:
        batch = self.build_batch(fragments)
        size = len(batch["actions"])
        mb = int(self.config.get("minibatch_size") or size)
        clip = self.config.get("grad_clip")
        totals, count = {}, 0
        for _ in range(int(self.config["num_epochs"])):
            order = self.rng.permutation(size)
            for start in range(0, size, mb):
                idx = order[start:start + mb]
                minibatch = {k: v[idx] for k, v in batch.items()}
                inputs, values = self.policy.forward(minibatch["obs"])
                stats, d_inputs, d_values = self.loss_fn(self.policy.dist, inputs, values, minibatch,
                                                         self.coeffs)
                grad = self.policy.backward(d_inputs, d_values)
                norm = float(np.sqrt(grad @ grad))
                if clip and norm > clip:
                    grad *= clip / norm
                self.optimizer.step(self.policy.params, grad)
                stats["gradients_default_optimizer_global_norm"] = norm
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                count += 1
        out = {k: v / count for k, v in totals.items()}
        if self.coeffs.get("use_kl_loss"):
            out["curr_kl_coeff"] = self._adapt_kl(out["mean_kl_loss"])
        out["vf_explained_var"] = explained_variance(batch["value_targets"], batch["vf_preds"])
        out["num_module_steps_trained"] = size * int(self.config["num_epochs"])
        return out

    def _adapt_kl(self, kl: float) -> float:
        """RLlib's adaptive KL penalty: raise the coefficient when the policy moved too far."""
        target = float(self.config.get("kl_target", 0.01))
        if kl > 2.0 * target:
            self.coeffs["kl_coeff"] *= 1.5
        elif kl < 0.5 * target:
            self.coeffs["kl_coeff"] *= 0.5
        return self.coeffs["kl_coeff"]

    def update_and_get_weights(self, fragments: list[dict]):
        """``update``, then the new weights: one call per iteration, whether local or an actor."""
        return self.update(fragments), self.get_weights()

    # -- weights and state --------------------------------------------------------------------
    def get_weights(self) -> np.ndarray:
        return self.policy.get_weights()

    def set_weights(self, weights) -> None:
        self.policy.set_weights(weights)

    def get_state(self) -> dict:
        return {"weights": self.get_weights(), "optimizer": self.optimizer.get_state(),
                "coeffs": dict(self.coeffs), "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.set_weights(state["weights"])
        self.optimizer.set_state(state["optimizer"])
        self.coeffs.update(state["coeffs"])
        self.rng.bit_generator.state = state["rng"]


def explained_variance(targets: np.ndarray, preds: np.ndarray) -> float:
    var = float(np.var(targets))
    return float("nan") if var == 0 else 1.0 - float(np.var(targets - preds)) / var

"""PG: REINFORCE with a learned baseline, the plain policy gradient to compare PPO against.

    advantage  A_t = G_t - V(s_t)       (G_t: the discounted return; lambda_=1 GAE gives exactly this,
                                         bootstrapped with V where a fragment or a time limit cuts in)
    loss       L = -mean(log pi(a_t|s_t) A_t) + vf_loss_coeff mean((V(s_t) - G_t)^2) - entropy_coeff mean H
    gradient   dL/dz = -A (d logp/dz) / B,   dL/dV = 2 vf_loss_coeff (V - G) / B

One gradient step per batch (the samples are on-policy only until the first update), so it needs
many more env steps than PPO, which reuses each batch for several epochs and keeps its steps small
with the clip.
"""
from __future__ import annotations

from miniray.rllib.algorithms.algorithm import Algorithm
from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig


def pg_loss(dist, inputs, values, batch, coeffs):
    B = len(values)
    adv = batch["advantages"]
    logp, d_logp_d_inputs = dist.logp(inputs, batch["actions"])
    entropy, d_entropy = dist.entropy(inputs)
    err = values - batch["value_targets"]
    policy_loss, vf_loss = -(logp * adv).mean(), (err * err).mean()
    vf_c, ent_c = coeffs["vf_loss_coeff"], coeffs["entropy_coeff"]
    total = policy_loss + vf_c * vf_loss - ent_c * entropy.mean()
    d_inputs = -(adv / B)[:, None] * d_logp_d_inputs - ent_c * d_entropy / B
    d_values = vf_c * 2.0 * err / B
    return ({"total_loss": total, "policy_loss": policy_loss, "vf_loss": vf_loss,
             "entropy": entropy.mean()}, d_inputs, d_values)


class PGConfig(AlgorithmConfig):
    """One Adam step per batch of 2000 env steps, lr 4e-3, lambda_ 1 (Monte-Carlo returns)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PG)
        self.num_env_runners = 2
        self.lr, self.train_batch_size, self.num_epochs, self.minibatch_size = 4e-3, 2000, 1, None
        self.lambda_, self.vf_loss_coeff, self.entropy_coeff = 1.0, 0.5, 0.0


class PG(Algorithm):
    loss_fn = staticmethod(pg_loss)

    @classmethod
    def get_default_config(cls) -> PGConfig:
        return PGConfig(algo_class=cls)

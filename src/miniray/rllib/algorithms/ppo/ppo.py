"""PPO: the clipped surrogate objective, a value function, and an adaptive KL penalty.

For each minibatch row (obs s, action a, advantage A, value target R, sampling distribution pi_old):

    ratio      r = pi(a|s) / pi_old(a|s) = exp(logp - logp_old)
    surrogate  S = min(A r, A clip(r, 1 - clip_param, 1 + clip_param))
    vf loss    L_vf = min((V(s) - R)^2, vf_clip_param)        (RLlib clips the squared error)
    total      L = -mean S + vf_loss_coeff mean L_vf - entropy_coeff mean H + kl_coeff mean KL(old||new)

and its gradients, written by hand (checked numerically in tests/test_rllib_core.py), z being the
action distribution's inputs (``core/distributions.py`` gives d logp/dz, dH/dz and dKL/dz):

    dS/dz    = A r [A r <= A clip(r)] d logp/dz          (zero where the clip is active)
    dL_vf/dV = 2 (V - R) [(V - R)^2 < vf_clip_param]
"""
from __future__ import annotations

import numpy as np

from miniray.rllib.algorithms.algorithm import Algorithm
from miniray.rllib.algorithms.algorithm_config import _NOT, AlgorithmConfig


def ppo_loss(dist, inputs, values, batch, coeffs):
    """(stats, d total / d inputs, d total / d values) for one minibatch; ``inputs`` are the new
    action distribution inputs (logits), ``batch["action_dist_inputs"]`` the sampling ones."""
    B = len(values)
    actions, old_inputs = batch["actions"], batch["action_dist_inputs"]
    logp, d_logp_d_inputs = dist.logp(inputs, actions)
    old_logp, _ = dist.logp(old_inputs, actions)
    ratio = np.exp(logp - old_logp)
    adv, clip = batch["advantages"], coeffs["clip_param"]
    unclipped, clipped = adv * ratio, adv * np.clip(ratio, 1.0 - clip, 1.0 + clip)
    policy_loss = -np.minimum(unclipped, clipped).mean()
    entropy, d_entropy = dist.entropy(inputs)
    kl, d_kl = dist.kl(old_inputs, inputs)
    err = values - batch["value_targets"]
    sq, vf_clip = err * err, coeffs["vf_clip_param"]
    vf_loss = np.minimum(sq, vf_clip).mean()
    vf_c, ent_c = coeffs["vf_loss_coeff"], coeffs["entropy_coeff"]
    kl_c = coeffs["kl_coeff"] if coeffs["use_kl_loss"] else 0.0
    total = policy_loss + vf_c * vf_loss - ent_c * entropy.mean() + kl_c * kl.mean()

    d_logp = -adv * ratio * (unclipped <= clipped) / B
    d_inputs = d_logp[:, None] * d_logp_d_inputs - ent_c * d_entropy / B + kl_c * d_kl / B
    d_values = vf_c * 2.0 * err * (sq < vf_clip) / B
    stats = {"total_loss": total, "policy_loss": policy_loss, "vf_loss": vf_loss,
             "vf_loss_unclipped": sq.mean(), "entropy": entropy.mean(), "mean_kl_loss": kl.mean(),
             "clip_fraction": float(np.mean(np.abs(ratio - 1.0) > clip))}
    return stats, d_inputs, d_values


class PPOConfig(AlgorithmConfig):
    """RLlib's PPO defaults (lr 5e-5, 30 epochs of 128-row minibatches, clip 0.3, KL penalty 0.2),
    except a smaller model: two hidden layers of 64 (numpy on a laptop)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPO)
        self.num_env_runners = 2
        self.lr, self.train_batch_size, self.minibatch_size, self.num_epochs = 5e-5, 4000, 128, 30
        self.lambda_, self.clip_param, self.vf_clip_param = 1.0, 0.3, 10.0
        self.vf_loss_coeff, self.entropy_coeff = 1.0, 0.0
        self.use_kl_loss, self.kl_coeff, self.kl_target = True, 0.2, 0.01

    def training(self, *, clip_param=_NOT, vf_clip_param=_NOT, use_kl_loss=_NOT, kl_coeff=_NOT,
                 kl_target=_NOT, **kwargs):
        super().training(**kwargs)
        return self._set(clip_param=clip_param, vf_clip_param=vf_clip_param, use_kl_loss=use_kl_loss,
                         kl_coeff=kl_coeff, kl_target=kl_target)

    def validate(self) -> None:
        super().validate()
        if not self.clip_param > 0:
            raise ValueError(f"PPOConfig: clip_param must be > 0, got {self.clip_param!r}")
        if self.minibatch_size is not None and self.minibatch_size > self.train_batch_size:
            raise ValueError(f"PPOConfig: minibatch_size ({self.minibatch_size}) must not exceed "
                             f"train_batch_size ({self.train_batch_size})")


class PPO(Algorithm):
    loss_fn = staticmethod(ppo_loss)

    @classmethod
    def get_default_config(cls) -> PPOConfig:
        return PPOConfig(algo_class=cls)



"""miniray.rllib's numpy pieces, without a runtime: backprop against finite differences, GAE and
PPO's loss against hand-computed numbers, the env runner's fragments, and the config's dicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig  # noqa: E402
from miniray.rllib.algorithms.pg import PGConfig, pg_loss  # noqa: E402
from miniray.rllib.algorithms.ppo import PPO, PPOConfig, ppo_loss  # noqa: E402
from miniray.rllib.algorithms.registry import get_algorithm_class  # noqa: E402
from miniray.rllib.core.distributions import Categorical, DiagGaussian  # noqa: E402
from miniray.rllib.core.learner import Learner  # noqa: E402
from miniray.rllib.core.mlp import MLP, Adam  # noqa: E402
from miniray.rllib.core.distributions import log_softmax  # noqa: E402
from miniray.rllib.core.policy import Policy  # noqa: E402
from miniray.rllib.env.env_context import GymEnvCreator, resolve_env_creator  # noqa: E402
from miniray.rllib.env.env_runner import EnvRunner  # noqa: E402
from miniray.rllib.evaluation.postprocessing import compute_gae, discount_cumsum  # noqa: E402


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (changed in place)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear"])
def test_mlp_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(0)
    net = MLP([3, 5, 4, 2], activation)
    net.init(rng)
    net.params += 0.1 * rng.standard_normal(net.params.shape)   # biases off zero: relu kinks rarer
    x, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    net.forward(x)
    analytic = net.backward(w)
    numeric = numeric_grad(lambda: float((net.forward(x, keep=False) * w).sum()), net.params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_mlp_backward_without_forward_says_what_to_do():
    with pytest.raises(RuntimeError, match="forward"):
        MLP([2, 2]).backward(np.zeros((1, 2)))


def _batch(rng, dist, B=6):
    actions = (rng.integers(0, dist.n, B) if isinstance(dist, Categorical)
               else rng.standard_normal((B, dist.k)))
    return {"actions": actions, "action_dist_inputs": 0.5 * rng.standard_normal((B, dist.input_dim)),
            "advantages": rng.standard_normal(B), "value_targets": rng.standard_normal(B)}


DISTS = [Categorical(3), DiagGaussian(2)]


@pytest.mark.parametrize("dist", DISTS, ids=repr)
def test_distribution_gradients_match_finite_differences(dist):
    rng = np.random.default_rng(5)
    batch = _batch(rng, dist, B=4)
    inputs, old = 0.5 * rng.standard_normal((4, dist.input_dim)), batch["action_dist_inputs"]
    w = rng.standard_normal(4)                      # a weighted sum makes every row's gradient count
    for name, fn in (("logp", lambda x: dist.logp(x, batch["actions"])), ("entropy", dist.entropy),
                     ("kl", lambda x: dist.kl(old, x))):
        _, analytic = fn(inputs)
        numeric = numeric_grad(lambda: float((fn(inputs)[0] * w).sum()), inputs)
        np.testing.assert_allclose(analytic * w[:, None], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_distributions_agree_with_their_samples():
    rng = np.random.default_rng(6)
    cat, gauss = Categorical(3), DiagGaussian(1)
    logits = np.log(np.array([[0.2, 0.3, 0.5]]))
    draws = np.array([cat.sample(logits, rng)[0] for _ in range(4000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 4000, [0.2, 0.3, 0.5], atol=0.03)
    inputs = np.array([[1.5, np.log(0.5)]])                   # mean 1.5, std 0.5
    x = np.array([gauss.sample(inputs, rng)[0, 0] for _ in range(4000)])
    assert abs(x.mean() - 1.5) < 0.03 and abs(x.std() - 0.5) < 0.03
    assert gauss.kl(inputs, inputs)[0][0] == pytest.approx(0.0)
    assert gauss.entropy(inputs)[0][0] == pytest.approx(0.5 * np.log(2 * np.pi * np.e * 0.25))


@pytest.mark.parametrize("dist", DISTS, ids=repr)
@pytest.mark.parametrize("loss_fn,coeffs", [
    (ppo_loss, {"clip_param": 0.2, "vf_clip_param": 10.0, "vf_loss_coeff": 0.5, "entropy_coeff": 0.1,
                "kl_coeff": 0.3, "use_kl_loss": True}),
    (pg_loss, {"vf_loss_coeff": 0.5, "entropy_coeff": 0.1}),
], ids=["ppo", "pg"])
def test_loss_gradients_through_the_policy_match_finite_differences(loss_fn, coeffs, dist):
    """The whole chain: loss(params) = loss_fn(policy(obs)); analytic d/dparams vs numeric."""
    rng = np.random.default_rng(1)
    policy = Policy(4, model={"fcnet_hiddens": [8, 6]}, seed=2, dist=dist)
    policy.params += 0.3 * rng.standard_normal(policy.params.shape)
    obs, batch = rng.standard_normal((6, 4)), _batch(rng, dist)
    # sampled close to the current policy: ratios near 1, the clip inactive
    batch["action_dist_inputs"] = policy.logits(obs) + 0.05 * rng.standard_normal((6, dist.input_dim))

    def total():
        inputs, values = policy.logits(obs), policy.values(obs)
        return float(loss_fn(dist, inputs, values, batch, coeffs)[0]["total_loss"])

    inputs, values = policy.forward(obs)
    _, d_inputs, d_values = loss_fn(dist, inputs, values, batch, coeffs)
    analytic = policy.backward(d_inputs, d_values)
    numeric = numeric_grad(total, policy.params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-7)


def test_ppo_loss_gradient_is_zero_where_the_clip_is_active():
    rng = np.random.default_rng(3)
    dist = Categorical(3)
    batch = _batch(rng, dist, B=8)
    logits = batch["action_dist_inputs"] + 2.0 * rng.standard_normal((8, 3))     # ratios far from 1
    values = rng.standard_normal(8)
    coeffs = {"clip_param": 0.2, "vf_clip_param": 1e9, "vf_loss_coeff": 1.0, "entropy_coeff": 0.0,
              "kl_coeff": 0.0, "use_kl_loss": False}
    _, d_logits, _ = ppo_loss(dist, logits, values, batch, coeffs)
    numeric = numeric_grad(lambda: float(ppo_loss(dist, logits, values, batch, coeffs)[0]["total_loss"]), logits)
    np.testing.assert_allclose(d_logits, numeric, rtol=1e-4, atol=1e-8)
    assert (np.abs(d_logits).sum(axis=1) == 0).any(), "expected some rows with an active clip"


def test_ppo_loss_on_a_hand_computed_batch():
    """Two rows; both sampled from a uniform policy (logits 0, 0); the new policy gives action 0
    probability 0.75, so the ratio is 1.5 on both.  Row 0 (A=+1): the clip (1.2) is the minimum, no
    gradient.  Row 1 (A=-1): the unclipped -1.5 is the minimum, the gradient flows."""
    ln3 = math.log(3.0)
    logits = np.array([[ln3, 0.0], [ln3, 0.0]])
    batch = {"actions": np.array([0, 0]), "action_dist_inputs": np.zeros((2, 2)), "advantages": np.array([1.0, -1.0]),
             "value_targets": np.array([0.0, 5.0])}
    values = np.array([1.0, 2.0])                   # squared errors 1 and 9; 9 is clipped to 4
    coeffs = {"clip_param": 0.2, "vf_clip_param": 4.0, "vf_loss_coeff": 0.5, "entropy_coeff": 0.01,
              "kl_coeff": 0.2, "use_kl_loss": True}
    stats, d_logits, d_values = ppo_loss(Categorical(2), logits, values, batch, coeffs)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))           # 0.5623
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)          # 0.1438
    assert stats["policy_loss"] == pytest.approx(-(1.2 + -1.5) / 2)       # 0.15
    assert stats["vf_loss"] == pytest.approx((1 + 4) / 2)
    assert stats["entropy"] == pytest.approx(entropy)
    assert stats["mean_kl_loss"] == pytest.approx(kl)
    assert stats["total_loss"] == pytest.approx(0.15 + 0.5 * 2.5 - 0.01 * entropy + 0.2 * kl)
    assert stats["clip_fraction"] == 1.0
    np.testing.assert_allclose(d_values, [0.5 * 2 * 1.0 / 2, 0.0])        # the clipped row: no gradient
    only_policy = {**coeffs, "entropy_coeff": 0.0, "use_kl_loss": False}
    _, d_policy, _ = ppo_loss(Categorical(2), logits, values, batch, only_policy)
    # row 1: -(A r / B) (onehot - p) = -(-1 * 1.5 / 2) ([1, 0] - [0.75, 0.25])
    np.testing.assert_allclose(d_policy, [[0.0, 0.0], [0.1875, -0.1875]])


def test_gae_on_a_hand_computed_trajectory():
    # One episode of three steps that terminates: next values 0.4, 0.3, then 0 (no future).
    adv = compute_gae([1, 1, 1], [0.5, 0.4, 0.3], [0.4, 0.3, 0.0], [0, 0, 1], gamma=0.9, lambda_=0.8)
    # deltas .86, .87, .7;  A2 = .7, A1 = .87 + .72 * .7, A0 = .86 + .72 * A1
    np.testing.assert_allclose(adv, [0.86 + 0.72 * 1.374, 1.374, 0.7])


def test_gae_stops_at_an_episode_end_and_bootstraps_truncation_and_the_fragment_end():
    # t=1 is truncated (V(final obs) = 2.0 bootstraps it); t=2, t=3 start the next episode, whose
    # fragment ends with V(last obs) = 1.5.
    adv = compute_gae([1, 1, 1, 1], [1, 1, 1, 1], [1, 2.0, 1, 1.5], [0, 1, 0, 0], gamma=0.5, lambda_=1.0)
    np.testing.assert_allclose(adv, [1.0, 1.0, 0.875, 0.75])


def test_gae_with_lambda_one_is_the_return_minus_the_baseline_and_runs_per_env_column():
    rng = np.random.default_rng(4)
    r, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    nxt = np.vstack([v[1:], np.zeros((1, 3))])
    dones = np.zeros((5, 3))
    dones[-1] = 1
    adv = compute_gae(r, v, nxt, dones, gamma=0.9, lambda_=1.0)
    for col in range(3):
        np.testing.assert_allclose(adv[:, col], discount_cumsum(r[:, col], 0.9) - v[:, col])


def test_adam_minimises_a_quadratic():
    x, opt = np.array([3.0, -2.0]), Adam(2, lr=0.1)
    for _ in range(500):
        opt.step(x, 2 * x)
    np.testing.assert_allclose(x, 0.0, atol=1e-3)


class Corridor(gymnasium.Env):
    """Walk right (action 1) to the end of a corridor of ``length`` cells; 0 stays put."""

    def __init__(self, config=None):
        self.length = int((config or {}).get("length", 5))
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,))
        self.action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos += int(action)
        done = self.pos >= self.length
        return np.array([self.pos / self.length], np.float32), 1.0 if done else -0.1, done, False, {}


def test_env_runner_fragments_keep_final_observations_and_count_episodes():
    runner = EnvRunner(GymEnvCreator("CartPole-v1"), num_envs=3, seed=0)
    f = runner.sample(None, 200)
    assert f["obs"].shape == (200, 3, 4) and f["action_dist_inputs"].shape == (200, 3, 2) and f["env_steps"] == 600
    ended = f["terminateds"] | f["truncateds"]
    cont = ~ended[:-1]
    np.testing.assert_array_equal(f["next_obs"][:-1][cont], f["obs"][1:][cont])   # no end: s_t+1
    assert ended.sum() == len(f["episodes"]) > 10
    assert sum(n for _, n in f["episodes"]) <= 600
    assert not np.array_equal(f["next_obs"][:-1][ended[:-1]], f["obs"][1:][ended[:-1]])  # final != reset


def test_learner_bootstraps_truncated_episodes_with_the_final_observations_value():
    creator = lambda cfg: gymnasium.wrappers.TimeLimit(Corridor({"length": 100}), 3)  # noqa: E731
    runner = EnvRunner(creator, num_envs=1, seed=0)
    f = runner.sample(None, 3)
    assert f["truncateds"][-1, 0] and not f["terminateds"].any()
    cfg = {**PPOConfig().to_dict(), "gamma": 0.5, "lambda": 1.0, "env": None}
    learner = Learner(1, 2, cfg, ppo_loss, seed=0)
    batch = learner.build_batch([f])
    v = learner.policy.values
    v_final = v(f["next_obs"][-1])[0]
    r = f["rewards"][:, 0]
    expect_ret0 = r[0] + 0.5 * r[1] + 0.25 * r[2] + 0.125 * v_final
    assert batch["value_targets"][0] == pytest.approx(expect_ret0)


def test_config_builder_methods_to_dict_and_back():
    cfg = (PPOConfig().environment("CartPole-v1", env_config={"a": 1})
           .env_runners(num_env_runners=3, num_envs_per_env_runner=4, rollout_fragment_length=50)
           .training(lr=1e-3, gamma=0.95, lambda_=0.9, clip_param=0.1, train_batch_size=600,
                     minibatch_size=100, num_epochs=3, entropy_coeff=0.01, vf_loss_coeff=0.5,
                     model={"fcnet_hiddens": [16]})
           .debugging(seed=7))
    d = cfg.to_dict()
    assert d["lambda"] == 0.9 and "lambda_" not in d and d["num_env_runners"] == 3
    assert d["env_config"] == {"a": 1} and d["model"] == {"fcnet_hiddens": [16]} and d["seed"] == 7
    back = PPOConfig.from_dict(d)
    assert back == cfg and back.lambda_ == 0.9 and back.clip_param == 0.1
    assert cfg.fragment_length() == 50
    assert PPOConfig().training(train_batch_size=4000).env_runners(
        num_env_runners=2, num_envs_per_env_runner=8).fragment_length() == 250


def test_config_errors_say_what_to_do():
    with pytest.raises(ValueError, match="Unknown config key 'lrr'"):
        PPOConfig.from_dict({"lrr": 0.1})
    with pytest.raises(TypeError, match="does not support"):
        PPOConfig().training(fancy_option=1)
    with pytest.raises(ValueError, match="num_env_runners"):
        PPOConfig().env_runners(num_env_runners=-1).validate()
    with pytest.raises(ValueError, match="vf_share_layers"):
        PPOConfig().training(model={"vf_share_layers": True}).validate()
    with pytest.raises(ValueError, match="PPOConfig"):
        AlgorithmConfig().build_algo()
    with pytest.raises(ValueError, match="register_env"):
        resolve_env_creator("NoSuchEnv-v9")
    with pytest.raises(ValueError, match="Box or Discrete observations"):
        EnvRunner(GymEnvCreator("Blackjack-v1"))                        # a Tuple of observations

    def two_buttons(cfg):
        env = Corridor(cfg)
        env.action_space = gymnasium.spaces.MultiDiscrete([2, 2])
        return env

    with pytest.raises(ValueError, match="Discrete actions and 1-D Box"):
        EnvRunner(two_buttons)


def test_registry_names_the_algorithms():
    assert get_algorithm_class("PPO") is PPO
    assert get_algorithm_class("PG").get_default_config().__class__ is PGConfig
    assert get_algorithm_class("NoSuchAlgo") is None


def test_log_softmax_is_stable():
    out = log_softmax(np.array([[1000.0, 0.0]]))
    assert np.isfinite(out).all() and out[0, 0] == pytest.approx(0.0)


def test_one_blas_thread_inside_and_the_callers_count_restored_after():
    from miniray.rllib.core import blas

    with blas.one_blas_thread():
        pass
    if not blas._api:
        pytest.skip("numpy here does not use OpenBLAS")
    get, set_ = blas._api
    set_(2)
    try:
        with blas.one_blas_thread():
            assert get() == 1
        assert get() == 2
    finally:
        set_(2)

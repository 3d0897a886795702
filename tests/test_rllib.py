"""miniray.rllib on a real runtime: env runners are actor processes, weights travel through the
store, a killed runner is restarted, checkpoints round-trip, custom envs come from the registry."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from miniray.rllib.algorithms.algorithm import Algorithm  # noqa: E402
from miniray.rllib.algorithms.pg import PG, PGConfig  # noqa: E402
from miniray.rllib.algorithms.ppo import PPO, PPOConfig  # noqa: E402
from miniray.tune.registry import register_env  # noqa: E402


def fast_ppo(**runners):
    """PPO settings that learn CartPole in a few seconds (the benchmark's, with smaller batches)."""
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(**{"num_env_runners": 2, "num_envs_per_env_runner": 4, **runners})
            .training(lr=1e-3, train_batch_size=2000, minibatch_size=250, num_epochs=8, lambda_=0.95,
                      vf_clip_param=1e6, vf_loss_coeff=0.5, model={"fcnet_hiddens": [32, 32]})
            .debugging(seed=1))


def test_ppo_return_rises_well_above_random(rt):
    algo = fast_ppo().build_algo()
    try:
        results = [algo.train() for _ in range(10)]
    finally:
        algo.stop()
    first, last = results[0], results[-1]
    runners = last["env_runners"]
    assert first["env_runners"]["episode_return_mean"] < 40           # a random policy: about 22
    assert runners["episode_return_mean"] > 100, [r["env_runners"]["episode_return_mean"] for r in results]
    assert last["num_env_steps_sampled_lifetime"] == runners["num_env_steps_sampled_lifetime"] == 20_000
    assert last["training_iteration"] == 10 and last["time_this_iter_s"] > 0
    assert runners["episode_len_mean"] == pytest.approx(runners["episode_return_mean"])   # +1 a step
    losses = last["learners"]["default_policy"]
    assert {"policy_loss", "vf_loss", "entropy", "mean_kl_loss", "total_loss"} <= set(losses)
    assert losses["entropy"] < results[0]["learners"]["default_policy"]["entropy"]


def test_save_restore_and_from_checkpoint_give_the_same_actions(rt, tmp_path):
    algo = fast_ppo(num_env_runners=1).build()
    algo.train()
    saved = algo.save(str(tmp_path / "ckpt"))
    assert saved.checkpoint.path == str(tmp_path / "ckpt")
    obs = np.random.default_rng(0).uniform(-0.5, 0.5, (30, 4))
    before = [algo.compute_single_action(o, explore=False) for o in obs]
    assert len(set(before)) == 2                                       # not a constant policy
    algo.train()                                                       # move away from the checkpoint
    algo.restore(saved)
    assert [algo.compute_single_action(o, explore=False) for o in obs] == before
    assert algo.iteration == 1
    again = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert isinstance(again, PPO) and again.config.lr == algo.config.lr
        assert [again.compute_single_action(o, explore=False) for o in obs] == before
        np.testing.assert_array_equal(again.get_weights()["default_policy"], algo.get_weights()["default_policy"])
        assert again.train()["training_iteration"] == 2                 # it goes on training
    finally:
        again.stop()
        algo.stop()
    with pytest.raises(FileNotFoundError, match="algo.save"):
        Algorithm.from_checkpoint(str(tmp_path))
    with pytest.raises(ValueError, match="holds a PPO, not a PG"):
        PG.from_checkpoint(saved)


class Corridor(gymnasium.Env):
    """Walk right (action 1) to the end of a corridor; each step costs 0.1, the end pays 1."""

    def __init__(self, config=None):
        self.length = int((config or {}).get("length", 5))
        self.kill_marker = (config or {}).get("kill_marker")
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,))
        self.action_space = gymnasium.spaces.Discrete(2)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.steps += 1
        if self.kill_marker and self.steps == 50 and self._first_to_claim():
            os.kill(os.getpid(), signal.SIGKILL)          # a real crash, mid-sample
        self.pos += int(action)
        done = self.pos >= self.length
        trunc = self.steps % 100 == 0 and not done
        return np.array([self.pos / self.length], np.float32), 1.0 if done else -0.1, done, trunc, {}

    def _first_to_claim(self):
        try:
            os.close(os.open(self.kill_marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False


def test_custom_registered_env_reaches_the_runners_with_its_config(rt):
    register_env("corridor_test", lambda cfg: Corridor(cfg))
    algo = (PGConfig().environment("corridor_test", env_config={"length": 4})
            .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
            .training(lr=0.02, train_batch_size=400).debugging(seed=0).build_algo())
    try:
        results = [algo.train() for _ in range(8)]
    finally:
        algo.stop()
    # The best return is 1 - 3 * 0.1 = 0.7 (four steps right); a random walk takes about 8 steps.
    assert results[-1]["env_runners"]["episode_len_mean"] < results[0]["env_runners"]["episode_len_mean"]
    assert results[-1]["env_runners"]["episode_return_mean"] > 0.4
    assert min(r["env_runners"]["episode_len_mean"] for r in results) >= 4     # length=4 arrived


def test_a_killed_env_runner_is_restarted_and_the_iteration_completes(rt, tmp_path):
    marker = str(tmp_path / "killed")
    register_env("corridor_kill", lambda cfg: Corridor(cfg))
    algo = (PPOConfig().environment("corridor_kill", env_config={"kill_marker": marker})
            .env_runners(num_env_runners=2, num_envs_per_env_runner=1)
            .training(train_batch_size=200, minibatch_size=50, num_epochs=2).debugging(seed=0).build_algo())
    try:
        pids = {algo.env_runners[i].pid.remote() for i in range(2)}
        pids = set(rt.get(list(pids)))
        first = algo.train()                                 # one runner SIGKILLs itself at step 50
        assert os.path.exists(marker)
        assert first["env_runners"]["num_env_steps_sampled"] == 100      # the other runner's samples
        assert first["num_healthy_env_runners"] == 1
        later, deadline = first, time.monotonic() + 60      # a new process imports gymnasium: ~1 s
        while time.monotonic() < deadline:
            later = algo.train()                             # meanwhile the healthy runner samples
            assert later["env_runners"]["num_env_steps_sampled"] >= 100
            if later["num_healthy_env_runners"] == 2 and later["env_runners"]["num_env_steps_sampled"] == 200:
                break
        assert later["num_env_runner_restarts"] == 1 and later["num_healthy_env_runners"] == 2
        assert later["env_runners"]["num_env_steps_sampled"] == 200
        new_pids = set(rt.get([r.pid.remote() for r in algo.env_runners]))
        assert len(new_pids & pids) == 1 and len(new_pids) == 2          # one process is new
    finally:
        algo.stop()


def test_without_fault_tolerance_a_killed_runner_raises_with_advice(rt, tmp_path):
    register_env("corridor_kill2", lambda cfg: Corridor(cfg))
    algo = (PPOConfig().environment("corridor_kill2", env_config={"kill_marker": str(tmp_path / "k")})
            .env_runners(num_env_runners=1).fault_tolerance(restart_failed_env_runners=False)
            .training(train_batch_size=100, minibatch_size=50, num_epochs=1).build_algo())
    try:
        with pytest.raises(RuntimeError, match="restart_failed_env_runners=True"):
            algo.train()
    finally:
        algo.stop()


def test_learner_actor_and_runners_show_in_the_timeline(rt):
    since, t0 = rt.events.cursor(), time.time() * 1e6
    algo = fast_ppo().learners(num_learners=1).training(train_batch_size=4000, num_epochs=2).build_algo()
    try:
        algo.train()                                         # the first one waits for processes to start
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] == 4000
        assert result["learners"]["default_policy"]["num_module_steps_trained"] == 8000   # 2 epochs
        trace = [e for e in rt.timeline() if e.get("ts", t0) >= t0]
        from miniray_magics.timeline import timeline_of

        rows = timeline_of(rt.events.events(since)).rows              # what %timeline draws
    finally:
        algo.stop()
    samples = [e for e in trace if e.get("name") == "EnvRunner.sample"]
    updates = [e for e in trace if e.get("name") == "Learner.update_and_get_weights"]
    assert len({e["tid"] for e in samples}) == 2 and len(updates) == 2
    a, b = sorted(samples, key=lambda e: e["ts"])[-2:]
    assert b["ts"] < a["ts"] + a["dur"], "the two runners should sample at the same time"
    assert sum(r.startswith("EnvRunner ") for r in rows) == 2 and sum(r.startswith("Learner ") for r in rows) == 1
    assert updates[1]["ts"] >= max(a["ts"] + a["dur"], b["ts"] + b["dur"]) - 1e3   # learns after sampling


def test_trainable_shape_dict_config_local_runner_and_evaluate(rt, tmp_path):
    cfg = fast_ppo(num_env_runners=0).evaluation(evaluation_interval=2, evaluation_duration=3).to_dict()
    algo = PPO(config=cfg)                    # how Tune builds it: a plain dict
    try:
        assert algo.env_runners == []         # num_env_runners=0 samples in this process
        r1, r2 = algo.step(), algo.step()
        assert "evaluation" not in r1 and r2["evaluation"]["env_runners"]["num_episodes"] == 3
        assert r1["env_runners"]["num_env_steps_sampled"] == 2000
        algo.save_checkpoint(str(tmp_path))
        w = algo.get_weights()["default_policy"]
        algo.step()
        algo.load_checkpoint(str(tmp_path))
        np.testing.assert_array_equal(algo.get_weights()["default_policy"], w)
        assert algo.evaluate()["env_runners"]["episode_return_mean"] > 0
    finally:
        algo.cleanup()


def test_pg_learns_cartpole_more_slowly_than_ppo_but_learns(rt):
    algo = (PGConfig().environment("CartPole-v1").env_runners(num_env_runners=2, num_envs_per_env_runner=4)
            .debugging(seed=0).build_algo())
    try:
        results = [algo.train() for _ in range(10)]
    finally:
        algo.stop()
    assert isinstance(algo, PG)
    assert results[-1]["env_runners"]["episode_return_mean"] > 1.5 * results[0]["env_runners"]["episode_return_mean"]


def test_import_miniray_does_not_import_gymnasium():
    code = ("import sys, miniray; miniray.rllib.algorithms.ppo.PPOConfig(); "
            "print('gymnasium' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_an_algorithm_runs_inside_an_actor_as_a_tune_trial_would(rt):
    """Tune's shape: the trainable is looked up by name, built from a dict in a trial actor, which
    starts its own env runner actors; step() gives the results."""
    from miniray.tune.registry import get_trainable_cls

    @rt.remote
    class Trial:
        def __init__(self, name, config):
            self.algo = get_trainable_cls(name)(config=config)

        def step(self):
            r = self.algo.step()
            return r["training_iteration"], r["env_runners"]["num_env_steps_sampled"], r["num_healthy_env_runners"]

        def stop(self):
            self.algo.cleanup()

    cfg = fast_ppo(num_envs_per_env_runner=2).training(train_batch_size=400, num_epochs=1).to_dict()
    trial = Trial.remote("PPO", cfg)
    try:
        assert rt.get(trial.step.remote(), timeout=60) == (1, 400, 2)
        assert rt.get(trial.step.remote(), timeout=60) == (2, 400, 2)
        rt.get(trial.stop.remote(), timeout=30)
    finally:
        rt.kill(trial)


def test_discrete_observations_are_one_hot_for_training_and_single_actions(rt):
    algo = (PGConfig().environment("FrozenLake-v1", env_config={"is_slippery": False})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=2).training(train_batch_size=200)
            .debugging(seed=0).build_algo())
    try:
        assert algo.train()["env_runners"]["num_env_steps_sampled"] == 200
        assert algo.get_module().obs_dim == 16
        assert algo.compute_single_action(5, explore=False) in range(4)
        with pytest.raises(ValueError, match="observation"):
            algo.compute_single_action(np.zeros(3))
    finally:
        algo.stop()


def test_runners_that_cannot_be_placed_time_out_with_advice(rt):
    @rt.remote(num_cpus=2)
    class HoldsEveryCPU:                          # as two Tune trials would
        def ready(self):
            return True

    holder = HoldsEveryCPU.remote()
    rt.get(holder.ready.remote())
    algo = (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=1, sample_timeout_s=1.0)
            .training(train_batch_size=100, minibatch_size=50, num_epochs=1).build_algo())
    try:
        with pytest.raises(RuntimeError, match="num_cpus_per_env_runner=0"):
            algo.train()
    finally:
        algo.stop()
        rt.kill(holder)


class Reach(gymnasium.Env):
    """Continuous actions: say the number you are shown (reward -(action - target)^2), 5 per episode."""

    def __init__(self, config=None):
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,))
        self.action_space = gymnasium.spaces.Box(-2.0, 2.0, (1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._new_target(), {}

    def _new_target(self):
        self.target = self.np_random.uniform(-1, 1)
        return np.array([self.target], np.float32)

    def step(self, action):
        assert self.action_space.contains(action), action          # clipped to the Box by the runner
        reward = -float((action[0] - self.target) ** 2)
        self.t += 1
        return self._new_target(), reward, self.t >= 5, False, {}


def test_ppo_learns_continuous_actions_with_a_gaussian_policy(rt):
    algo = (PPOConfig().environment(Reach).env_runners(num_env_runners=2, num_envs_per_env_runner=4)
            .training(lr=3e-3, train_batch_size=1000, minibatch_size=250, num_epochs=8, gamma=0.0, lambda_=0.0,
                      vf_clip_param=1e6, model={"fcnet_hiddens": [16]}).debugging(seed=0).build_algo())
    try:
        results = [algo.train() for _ in range(12)]
        action = algo.compute_single_action(np.array([0.5], np.float32), explore=False)
    finally:
        algo.stop()
    first, last = (r["env_runners"]["episode_return_mean"] for r in (results[0], results[-1]))
    assert first < -3.0 and last > 0.25 * first, (first, last)   # a std-1 start loses ~ -1.3 a step
    assert isinstance(action, np.ndarray) and action.shape == (1,) and abs(action[0] - 0.5) < 0.25

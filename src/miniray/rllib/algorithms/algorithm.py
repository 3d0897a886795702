"""Algorithm: the driver's loop that ties env runner actors, the learner and the broadcast together.

    train() = step():  weights_ref = ray.put(weights)                     one put per iteration
                       fragments   = [runner.sample.remote(weights_ref, T) for each runner]  in parallel
                       stats       = learner.update(fragments)            (the driver, or a Learner actor)
                       weights     = learner's new weights
                       result      = RLlib's keys: env_runners/..., learners/default_policy/..., ...

Who runs where: the Algorithm object lives in the driver (or in a Tune trial's actor); env runners
are actors (``num_env_runners``) or, with 0, one EnvRunner inside this process; the learner is an
object here (``num_learners=0``) or an actor (``num_learners=1``).
State: the config (a frozen copy), the latest weights, lifetime counters, the last
``metrics_num_episodes_for_smoothing`` finished episodes, and the runner and learner handles.

Faults: a runner that dies mid-sample loses its fragment for this iteration; the others' samples
are learned from.  With ``restart_failed_env_runners`` (the default) the runner actors are created
with ``max_restarts``, so the runtime brings a dead one back and the next ``sample`` call gives it
the weights.  Without it, ``ignore_env_runner_failures`` drops dead runners and
carries on; neither set, the error is raised.

The Trainable shape (``setup``, ``step``, ``save_checkpoint``, ``load_checkpoint``, ``cleanup``)
lets miniray.tune run an Algorithm class as a trial.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections import deque

import numpy as np

import miniray
from miniray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, WorkerCrashedError
from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig
from miniray.rllib.core.learner import Learner
from miniray.rllib.core.policy import Policy
from miniray.rllib.env.env_context import resolve_env_creator
from miniray.rllib.env.env_runner import EnvRunner, flatten_obs

STATE_FILE, METADATA_FILE = "algorithm_state.pkl", "rllib_checkpoint.json"


class Algorithm:
    loss_fn = None      # each algorithm's: (dist, dist inputs, values, minibatch, coeffs) -> stats, grads

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        return AlgorithmConfig(algo_class=cls)

    def __init__(self, config=None, env=None, logger_creator=None, **trainable_kwargs):
        """``config``: an AlgorithmConfig or its ``to_dict()``; ``env`` overrides its env.  Tune's
        Trainable arguments (``logger_creator``, ``storage``, ...) are accepted and not used."""
        if env is not None:
            config = self._as_config(config)
            config.env = env
        self.setup(config)

    @classmethod
    def default_resource_request(cls, config):
        """What Tune reserves for one trial of this algorithm, as Ray's bundles: the main process
        (the trial's actor, ``num_cpus_for_main_process``), then one bundle of
        ``num_cpus_per_env_runner`` per env runner.  Tune counts the sum; the trial's actor holds only
        the first, so its runners find their CPUs free (no trial waits on its own runners)."""
        from miniray.tune.trainable import PlacementGroupFactory

        if isinstance(config, AlgorithmConfig):
            cfg = config
        else:
            cfg = cls.get_default_config().update_from_dict(config or {})
        cfg.validate()
        runners = [{"CPU": cfg.num_cpus_per_env_runner}] * cfg.num_env_runners
        return PlacementGroupFactory([{"CPU": cfg.num_cpus_for_main_process}] + runners)

    def _as_config(self, config) -> AlgorithmConfig:
        if isinstance(config, AlgorithmConfig):
            out = config.copy()
            out.algo_class = type(self)
            return out
        if config is None or isinstance(config, dict):
            return self.get_default_config().update_from_dict(config or {})
        raise TypeError(f"{type(self).__name__}(config=...) takes an AlgorithmConfig or a dict, "
                        f"got {type(config).__name__}")

    # -- setup --------------------------------------------------------------------------------
    def setup(self, config) -> None:
        """Build the env runners and the learner (the Trainable's ``setup``)."""
        self.config = cfg = self._as_config(config)
        cfg.validate()
        self.iteration, self._time_total = 0, 0.0
        self._counters = {"num_env_steps_sampled_lifetime": 0, "num_env_steps_trained_lifetime": 0,
                          "num_episodes_lifetime": 0, "num_env_runner_restarts": 0}
        self._episodes = deque(maxlen=cfg.metrics_num_episodes_for_smoothing)
        self._env_creator = resolve_env_creator(cfg.env)
        self._rng = np.random.default_rng(cfg.seed)
        # The driver's own runner: it samples when num_env_runners=0, evaluates, and tells us the spaces.
        self._local_runner = EnvRunner(self._env_creator, cfg.env_config, 1 if cfg.num_env_runners else
                                       cfg.num_envs_per_env_runner, cfg.model, cfg.seed, 0, cfg.num_env_runners)
        dims = (self._local_runner.obs_dim, self._local_runner.dist)
        self._policy = Policy(dims[0], model=cfg.model, dist=dims[1])       # for compute_single_action
        learner_cfg = {**cfg.to_dict(), "env": None}
        if cfg.num_learners:
            self._learner = miniray.remote(Learner).remote(*dims, learner_cfg, type(self).loss_fn, cfg.seed)
            self._weights = miniray.get(self._learner.get_weights.remote())
        else:
            self._learner = Learner(*dims, learner_cfg, type(self).loss_fn, cfg.seed)
            self._weights = self._learner.get_weights()
        self._policy.set_weights(self._weights)
        restarts = cfg.max_num_env_runner_restarts if cfg.restart_failed_env_runners else 0
        runner_cls = miniray.remote(EnvRunner).options(max_restarts=restarts,
                                                       num_cpus=cfg.num_cpus_per_env_runner)
        self.env_runners = [runner_cls.remote(self._env_creator, cfg.env_config, cfg.num_envs_per_env_runner,
                                              cfg.model, cfg.seed, i + 1, cfg.num_env_runners)
                            for i in range(cfg.num_env_runners)]
        self._probes: dict = {}        # runner index -> ping ref, while a failed runner restarts

    # -- one iteration ------------------------------------------------------------------------
    def train(self) -> dict:
        """One iteration: sample with the current weights, learn, and report (RLlib's result keys)."""
        return self.step()

    def step(self) -> dict:
        t0 = time.perf_counter()
        result = self.training_step()
        self.iteration += 1
        dt = time.perf_counter() - t0
        self._time_total += dt
        result.update(training_iteration=self.iteration, time_this_iter_s=dt, time_total_s=self._time_total,
                      timestamp=int(time.time()), pid=os.getpid(), done=False)
        cfg = self.config
        if cfg.evaluation_interval and self.iteration % cfg.evaluation_interval == 0:
            result["evaluation"] = self.evaluate()
        return result

    def training_step(self) -> dict:
        weights_ref = miniray.put(self._weights)             # the broadcast: one put, read by every runner
        fragments, sample_time = self._sample(weights_ref)
        t0 = time.perf_counter()
        if self.config.num_learners:
            stats, self._weights = miniray.get(self._learner.update_and_get_weights.remote(fragments))
        else:
            stats, self._weights = self._learner.update_and_get_weights(fragments)
        self._policy.set_weights(self._weights)
        steps = sum(f["env_steps"] for f in fragments)
        self._counters["num_env_steps_trained_lifetime"] += steps
        return self._result(fragments, stats, sample_time, time.perf_counter() - t0)

    def _sample(self, weights_ref) -> tuple[list, float]:
        """At least train_batch_size env steps from the healthy runners (fewer if one fails now)."""
        t0, cfg = time.perf_counter(), self.config
        T, fragments, steps = cfg.fragment_length(), [], 0
        if not self.env_runners:
            while steps < cfg.train_batch_size:
                fragments.append(self._local_runner.sample(self._weights, T, cfg.explore))
                steps += fragments[-1]["env_steps"]
            return fragments, time.perf_counter() - t0
        deadline = time.monotonic() + cfg.sample_timeout_s
        while steps < cfg.train_batch_size:
            healthy = self._healthy_runners()
            if not healthy:
                if all(r is None for r in self.env_runners):
                    raise RuntimeError("Every env runner has failed and none can be restarted")
                if fragments or time.monotonic() > deadline:
                    break
                time.sleep(0.05)         # every runner is restarting: wait for one to answer
                continue
            refs = {i: self.env_runners[i].sample.remote(weights_ref, T, cfg.explore) for i in healthy}
            got, failed = self._collect(refs)
            fragments += got
            steps += sum(f["env_steps"] for f in got)
            if failed and fragments:
                break                    # learn from the others' samples; the failed one restarts
        if not fragments:
            raise self._timed_out()
        return fragments, time.perf_counter() - t0

    def _timed_out(self) -> RuntimeError:
        cfg = self.config
        return RuntimeError(
            f"No env runner answered within sample_timeout_s={cfg.sample_timeout_s}. Each runner is an actor "
            f"asking for num_cpus_per_env_runner={cfg.num_cpus_per_env_runner} CPU; if the cluster's CPUs are "
            f"taken (by Tune trials, say), ask for less with .env_runners(num_cpus_per_env_runner=0), or "
            f"start miniray with more CPUs")

    def _healthy_runners(self) -> list[int]:
        """Runner indices to sample from; a failed runner comes back once it answers a ping."""
        for i, ping in list(self._probes.items()):
            ready, _ = miniray.wait([ping], timeout=0)
            if not ready:
                continue
            try:
                miniray.get(ping)
                del self._probes[i]
                self._counters["num_env_runner_restarts"] += 1
            except (RayActorError, WorkerCrashedError) as e:
                if isinstance(e, ActorDiedError):                      # out of restarts
                    self._drop_runner(i, e)
                else:
                    self._probes[i] = self.env_runners[i].pid.remote()  # still restarting
        return [i for i, r in enumerate(self.env_runners) if r is not None and i not in self._probes]

    def _collect(self, refs: dict) -> tuple[list, list]:
        got, failed = [], []
        for i, ref in refs.items():
            try:
                got.append(miniray.get(ref, timeout=self.config.sample_timeout_s))
            except GetTimeoutError as e:
                raise self._timed_out() from e
            except (RayActorError, WorkerCrashedError) as e:
                failed.append(i)
                if self.config.restart_failed_env_runners and not isinstance(e, ActorDiedError):
                    self._probes[i] = self.env_runners[i].pid.remote()
                else:
                    self._drop_runner(i, e)
        return got, failed

    def _drop_runner(self, index: int, error: Exception) -> None:
        self._probes.pop(index, None)
        if not self.config.ignore_env_runner_failures and not self.config.restart_failed_env_runners:
            raise RuntimeError(f"Env runner {index + 1} failed; set config.fault_tolerance("
                               f"restart_failed_env_runners=True) to restart it and carry on, or "
                               f"ignore_env_runner_failures=True to go on without it") from error
        self.env_runners[index] = None

    def _result(self, fragments, stats, sample_time, learn_time) -> dict:
        episodes = [e for f in fragments for e in f["episodes"]]
        self._episodes.extend(episodes)
        steps = sum(f["env_steps"] for f in fragments)
        c = self._counters
        c["num_env_steps_sampled_lifetime"] += steps
        c["num_episodes_lifetime"] += len(episodes)
        returns = [r for r, _ in self._episodes]
        lengths = [n for _, n in self._episodes]
        nan = float("nan")
        runners = {"episode_return_mean": float(np.mean(returns)) if returns else nan,
                   "episode_return_max": float(np.max(returns)) if returns else nan,
                   "episode_return_min": float(np.min(returns)) if returns else nan,
                   "episode_len_mean": float(np.mean(lengths)) if lengths else nan,
                   "num_episodes": len(episodes), "num_env_steps_sampled": steps,
                   "num_env_steps_sampled_lifetime": c["num_env_steps_sampled_lifetime"],
                   "num_episodes_lifetime": c["num_episodes_lifetime"], "sample": sample_time}
        learners = {"default_policy": stats,
                    "__all_modules__": {"num_env_steps_trained": steps,
                                        "num_env_steps_trained_lifetime": c["num_env_steps_trained_lifetime"],
                                        "learner_update_time_s": learn_time}}
        return {"env_runners": runners, "learners": learners, **c,
                "num_healthy_env_runners": sum(r is not None for r in self.env_runners) - len(self._probes),
                "timesteps_total": c["num_env_steps_sampled_lifetime"],          # the old stack's names
                "episode_reward_mean": runners["episode_return_mean"]}

    # -- using the policy ---------------------------------------------------------------------
    def compute_single_action(self, observation, explore: bool | None = None, **_ignored):
        """One action for one observation, from the current weights (explore=False: the argmax)."""
        explore = self.config.explore if explore is None else explore
        obs = flatten_obs(self._local_runner.envs[0], observation, check=True).reshape(1, -1)
        actions, _ = self._policy.compute_actions(obs, self._rng, explore)
        return self._local_runner.env_action(self._local_runner.envs[0], actions[0])

    def evaluate(self) -> dict:
        """``evaluation_duration`` whole episodes without exploration, in this process."""
        episodes = self._local_runner.run_episodes(self._weights, self.config.evaluation_duration)
        returns, lengths = [r for r, _ in episodes], [n for _, n in episodes]
        return {"env_runners": {"episode_return_mean": float(np.mean(returns)),
                                "episode_return_max": float(np.max(returns)),
                                "episode_return_min": float(np.min(returns)),
                                "episode_len_mean": float(np.mean(lengths)), "num_episodes": len(episodes)}}

    def get_module(self, module_id: str = "default_policy") -> Policy:
        return self._policy

    def get_weights(self, policies=None) -> dict:
        return {"default_policy": self._weights.copy()}

    def set_weights(self, weights: dict) -> None:
        w = np.asarray(weights["default_policy"] if isinstance(weights, dict) else weights)
        self._policy.set_weights(w)
        self._weights = self._policy.get_weights()
        state = self._learner_state()
        state["weights"] = self._weights
        self._set_learner_state(state)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint_dir: str) -> str:
        """Write this algorithm's state into ``checkpoint_dir`` (the Trainable's hook)."""
        import cloudpickle
        import json

        os.makedirs(checkpoint_dir, exist_ok=True)
        state = {"algorithm": type(self).__name__, "config": self.config.to_dict(),
                 "learner": self._learner_state(), "iteration": self.iteration,
                 "time_total": self._time_total, "counters": dict(self._counters),
                 "episodes": list(self._episodes), "rng": self._rng.bit_generator.state}
        with open(os.path.join(checkpoint_dir, STATE_FILE), "wb") as f:
            cloudpickle.dump(state, f)
        with open(os.path.join(checkpoint_dir, METADATA_FILE), "w") as f:
            json.dump({"type": "Algorithm", "algorithm": type(self).__name__, "format": "miniray-numpy",
                       "checkpoint_version": "1"}, f)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = _read_state(checkpoint_dir)
        self._set_learner_state(state["learner"])
        self._weights = state["learner"]["weights"].copy()
        self._policy.set_weights(self._weights)
        self.iteration, self._time_total = state["iteration"], state["time_total"]
        self._counters.update(state["counters"])
        self._episodes.clear()
        self._episodes.extend(state["episodes"])
        self._rng.bit_generator.state = state["rng"]

    def save(self, checkpoint_dir: str | None = None):
        """Save to ``checkpoint_dir`` (a new temporary directory if None); ``.checkpoint.path`` is
        where it went, as in RLlib's TrainingResult."""
        path = self.save_to_path(checkpoint_dir)
        return SaveResult(Checkpoint(path), {"training_iteration": self.iteration})

    def save_to_path(self, path: str | None = None) -> str:
        path = os.path.abspath(os.fspath(path)) if path is not None else tempfile.mkdtemp(prefix="rllib_ckpt_")
        return self.save_checkpoint(path)

    def restore(self, checkpoint) -> None:
        """Load a checkpoint: a path, a Checkpoint, or what ``save()`` returned."""
        self.load_checkpoint(_checkpoint_path(checkpoint))

    restore_from_path = restore

    @classmethod
    def from_checkpoint(cls, checkpoint):
        """A new algorithm of the saved class and config, with the saved state."""
        from miniray.rllib.algorithms.registry import get_algorithm_class

        path = _checkpoint_path(checkpoint)
        state = _read_state(path)
        algo_cls = cls if cls.loss_fn is not None else get_algorithm_class(state["algorithm"])
        if algo_cls is None:
            raise ValueError(f"The checkpoint in {path} is of an unknown algorithm {state['algorithm']!r}")
        if algo_cls.__name__ != state["algorithm"]:
            raise ValueError(f"The checkpoint in {path} holds a {state['algorithm']}, not a {algo_cls.__name__}: "
                             f"use Algorithm.from_checkpoint(path) or {state['algorithm']}.from_checkpoint(path)")
        algo = algo_cls(config=state["config"])
        algo.load_checkpoint(path)
        return algo

    def _learner_state(self) -> dict:
        if self.config.num_learners:
            return miniray.get(self._learner.get_state.remote())
        return self._learner.get_state()

    def _set_learner_state(self, state) -> None:
        if self.config.num_learners:
            miniray.get(self._learner.set_state.remote(state))
        else:
            self._learner.set_state(state)

    # -- the end ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Kill the env runner (and learner) actors; the algorithm cannot train afterwards."""
        actors = [r for r in self.env_runners if r is not None]
        for actor in actors + ([self._learner] if self.config.num_learners else []):
            try:
                miniray.kill(actor)
            except Exception:                     # already gone (the runtime shut down first)
                pass
        self.env_runners = []
        self._local_runner.stop()

    cleanup = stop

    def __repr__(self):
        return f"{type(self).__name__}(env={self.config.env!r}, iteration={self.iteration})"


class Checkpoint:
    """A directory holding a saved algorithm (``.path``), as ``ray.train.Checkpoint`` is."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def from_directory(cls, path: str):
        return cls(os.path.abspath(os.fspath(path)))

    def to_directory(self, path: str | None = None) -> str:
        return self.path

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"Checkpoint(path={self.path!r})"


class SaveResult:
    """What ``save()`` returns, as RLlib's TrainingResult: ``.checkpoint`` and ``.metrics``."""

    def __init__(self, checkpoint: Checkpoint, metrics: dict):
        self.checkpoint, self.metrics = checkpoint, metrics

    def __repr__(self):
        return f"SaveResult(checkpoint={self.checkpoint!r})"


def _checkpoint_path(checkpoint) -> str:
    if isinstance(checkpoint, SaveResult):
        checkpoint = checkpoint.checkpoint
    path = getattr(checkpoint, "path", checkpoint)
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, STATE_FILE)):
        raise FileNotFoundError(f"No saved algorithm in {path!r} (expected {STATE_FILE} there; "
                                f"make one with algo.save(path))")
    return path


def _read_state(path: str) -> dict:
    with open(os.path.join(path, STATE_FILE), "rb") as f:
        return pickle.load(f)

"""AlgorithmConfig: RLlib's builder-style configuration, flat underneath.

    PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).training(lr=3e-4)
        each method sets attributes and returns self ──► build_algo() ──► PPO(config=copy)
    to_dict() ──► {"env": ..., "lr": ..., "lambda": ...}  (Ray's keys) ──► from_dict / Tune's param_space

State: plain attributes, one per setting, with RLlib's names (``lambda_`` is ``"lambda"`` in the
dict, as in RLlib).  ``validate`` checks them before an algorithm is built; a config given to an
algorithm is copied, so changing it afterwards changes nothing.
"""
from __future__ import annotations

import copy
import math

_NOT = object()    # "not given": a setter leaves the attribute alone
_FRAMEWORKS = ("numpy", "torch", "tf2", "tf", "jax")


class AlgorithmConfig:
    def __init__(self, algo_class=None):
        self.algo_class = algo_class
        # environment
        self.env, self.env_config = None, {}
        # env runners
        self.num_env_runners, self.num_envs_per_env_runner = 0, 1
        self.rollout_fragment_length = "auto"
        self.num_cpus_per_env_runner, self.sample_timeout_s = 1, 60.0
        self.num_cpus_for_main_process = 1      # the Algorithm's own process (a Tune trial's actor)
        self.explore = True
        # training (the loss-specific ones are the algorithm config's)
        self.lr, self.gamma, self.train_batch_size = 1e-3, 0.99, 4000
        self.minibatch_size, self.num_epochs, self.grad_clip = None, 1, None
        self.lambda_, self.vf_loss_coeff, self.entropy_coeff = 1.0, 1.0, 0.0
        self.model = {}
        # learners
        self.num_learners = 0
        # evaluation
        self.evaluation_interval, self.evaluation_duration = None, 10
        self.evaluation_duration_unit = "episodes"
        # fault tolerance
        self.restart_failed_env_runners, self.ignore_env_runner_failures = True, False
        self.max_num_env_runner_restarts = 1000
        # reporting, debugging, framework
        self.metrics_num_episodes_for_smoothing = 100
        self.seed, self.framework_str = None, "numpy"

    # -- the builder methods (RLlib's names) ---------------------------------------------------
    def environment(self, env=_NOT, *, env_config=_NOT, **unsupported):
        _refuse("environment", unsupported)
        return self._set(env=env, env_config=env_config)

    def env_runners(self, *, num_env_runners=_NOT, num_envs_per_env_runner=_NOT,
                    rollout_fragment_length=_NOT, num_cpus_per_env_runner=_NOT, sample_timeout_s=_NOT,
                    explore=_NOT, **unsupported):
        _refuse("env_runners", unsupported)
        return self._set(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                         rollout_fragment_length=rollout_fragment_length, explore=explore,
                         num_cpus_per_env_runner=num_cpus_per_env_runner, sample_timeout_s=sample_timeout_s)

    def rollouts(self, *, num_rollout_workers=_NOT, num_envs_per_worker=_NOT, **kwargs):
        """The old name of ``env_runners`` (Ray 2.x before 2.10)."""
        return self.env_runners(num_env_runners=num_rollout_workers,
                                num_envs_per_env_runner=num_envs_per_worker, **kwargs)

    def training(self, *, lr=_NOT, gamma=_NOT, train_batch_size=_NOT, minibatch_size=_NOT,
                 num_epochs=_NOT, grad_clip=_NOT, lambda_=_NOT, vf_loss_coeff=_NOT, entropy_coeff=_NOT,
                 model=_NOT, num_sgd_iter=_NOT, sgd_minibatch_size=_NOT, **unsupported):
        _refuse("training", unsupported)
        num_epochs = num_sgd_iter if num_epochs is _NOT else num_epochs          # the old names
        minibatch_size = sgd_minibatch_size if minibatch_size is _NOT else minibatch_size
        return self._set(lr=lr, gamma=gamma, train_batch_size=train_batch_size,
                         minibatch_size=minibatch_size, num_epochs=num_epochs, grad_clip=grad_clip,
                         lambda_=lambda_, vf_loss_coeff=vf_loss_coeff, entropy_coeff=entropy_coeff,
                         model=model)

    def rl_module(self, *, model_config=_NOT, model_config_dict=_NOT, **unsupported):
        """The new API stack's place for the model dict (``fcnet_hiddens`` ...)."""
        _refuse("rl_module", unsupported)
        model = model_config_dict if model_config is _NOT else model_config
        if model is not _NOT and not isinstance(model, dict):
            model = {k: v for k, v in vars(model).items() if k in ("fcnet_hiddens", "fcnet_activation",
                                                                    "vf_share_layers")}
        return self._set(model=model)

    def learners(self, *, num_learners=_NOT, **unsupported):
        _refuse("learners", unsupported)
        return self._set(num_learners=num_learners)

    def evaluation(self, *, evaluation_interval=_NOT, evaluation_duration=_NOT,
                   evaluation_duration_unit=_NOT, **unsupported):
        _refuse("evaluation", unsupported)
        return self._set(evaluation_interval=evaluation_interval, evaluation_duration=evaluation_duration,
                         evaluation_duration_unit=evaluation_duration_unit)

    def fault_tolerance(self, *, restart_failed_env_runners=_NOT, ignore_env_runner_failures=_NOT,
                        max_num_env_runner_restarts=_NOT, **unsupported):
        _refuse("fault_tolerance", unsupported)
        return self._set(restart_failed_env_runners=restart_failed_env_runners,
                         ignore_env_runner_failures=ignore_env_runner_failures,
                         max_num_env_runner_restarts=max_num_env_runner_restarts)

    def reporting(self, *, metrics_num_episodes_for_smoothing=_NOT, **unsupported):
        _refuse("reporting", unsupported)
        return self._set(metrics_num_episodes_for_smoothing=metrics_num_episodes_for_smoothing)

    def debugging(self, *, seed=_NOT, log_level=_NOT, **unsupported):
        _refuse("debugging", unsupported)
        return self._set(seed=seed)

    def framework(self, framework=_NOT, **_ignored):
        """Accepted so Ray examples run; miniray.rllib always computes with numpy."""
        if framework is not _NOT and framework not in _FRAMEWORKS:
            raise ValueError(f"framework must be one of {_FRAMEWORKS}, got {framework!r}")
        return self._set(framework_str=framework)

    def api_stack(self, **_ignored):
        """Accepted so Ray examples run; there is one stack here (RLlib's new one in shape)."""
        return self

    def resources(self, *, num_cpus_for_main_process=_NOT, **_ignored):
        """``num_cpus_for_main_process``: what a Tune trial's actor holds (Ray's name); the rest
        of Ray's settings are accepted so its examples run (env runners take
        ``num_cpus_per_env_runner``)."""
        return self._set(num_cpus_for_main_process=num_cpus_for_main_process)

    def _set(self, **values):
        for k, v in values.items():
            if v is not _NOT:
                setattr(self, k, copy.deepcopy(v) if isinstance(v, (dict, list)) else v)
        return self

    # -- dicts --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every setting under RLlib's key (``lambda``, not ``lambda_``), ready for Tune's param_space."""
        d = {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in ("algo_class", "lambda_",
                                                                              "framework_str")}
        d["lambda"], d["framework"] = self.lambda_, self.framework_str
        return d

    def update_from_dict(self, config: dict):
        names = {"lambda": "lambda_", "framework": "framework_str", "num_rollout_workers": "num_env_runners",
                 "num_sgd_iter": "num_epochs", "sgd_minibatch_size": "minibatch_size",
                 "num_envs_per_worker": "num_envs_per_env_runner"}
        for key, value in config.items():
            attr = names.get(key, key)
            if attr == "algo_class" or not hasattr(self, attr):
                known = sorted(self.to_dict())
                raise ValueError(f"Unknown config key {key!r} for {type(self).__name__}; known keys: {known}")
            setattr(self, attr, copy.deepcopy(value))
        return self

    @classmethod
    def from_dict(cls, config: dict):
        return cls().update_from_dict(config)

    def copy(self, copy_frozen=None):
        return copy.deepcopy(self)

    def get(self, key, default=None):
        return self.to_dict().get(key, default)

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __eq__(self, other):
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self):
        return f"{type(self).__name__}(env={self.env!r}, num_env_runners={self.num_env_runners}, lr={self.lr})"

    # -- checks and building ------------------------------------------------------------------
    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise ValueError(f"{type(self).__name__}: {what}")
        for name in ("num_cpus_for_main_process", "num_cpus_per_env_runner"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and value >= 0, f"{name} must be a number >= 0, got {value!r}")
        need(isinstance(self.num_env_runners, int) and self.num_env_runners >= 0,
             f"num_env_runners must be an int >= 0, got {self.num_env_runners!r}")
        need(isinstance(self.num_envs_per_env_runner, int) and self.num_envs_per_env_runner >= 1,
             f"num_envs_per_env_runner must be an int >= 1, got {self.num_envs_per_env_runner!r}")
        need(self.rollout_fragment_length == "auto" or (isinstance(self.rollout_fragment_length, int)
                                                        and self.rollout_fragment_length >= 1),
             f"rollout_fragment_length must be 'auto' or an int >= 1, got {self.rollout_fragment_length!r}")
        need(isinstance(self.train_batch_size, int) and self.train_batch_size >= 1,
             f"train_batch_size must be an int >= 1, got {self.train_batch_size!r}")
        need(self.minibatch_size is None or (isinstance(self.minibatch_size, int) and self.minibatch_size >= 1),
             f"minibatch_size must be None or an int >= 1, got {self.minibatch_size!r}")
        need(isinstance(self.num_epochs, int) and self.num_epochs >= 1,
             f"num_epochs must be an int >= 1, got {self.num_epochs!r}")
        need(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be a number > 0, got {self.lr!r}")
        need(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma!r}")
        need(0.0 <= self.lambda_ <= 1.0, f"lambda_ must be in [0, 1], got {self.lambda_!r}")
        need(self.num_learners in (0, 1), f"num_learners must be 0 (learn in the driver) or 1 (a "
                                          f"Learner actor), got {self.num_learners!r}")
        need(self.evaluation_duration_unit == "episodes",
             "evaluation_duration_unit must be 'episodes' (timesteps are not supported)")
        from miniray.rllib.core.policy import model_config

        model_config(self.model)

    def fragment_length(self) -> int:
        """Steps per env per sample call: 'auto' splits train_batch_size over all envs of all runners."""
        if self.rollout_fragment_length != "auto":
            return self.rollout_fragment_length
        envs = max(1, self.num_env_runners) * self.num_envs_per_env_runner
        return max(1, math.ceil(self.train_batch_size / envs))

    def build_algo(self, env=None, logger_creator=None, use_copy: bool = True):
        if self.algo_class is None:
            raise ValueError("A plain AlgorithmConfig has no algorithm to build: start from an "
                             "algorithm's config, e.g. PPOConfig() or PGConfig()")
        cfg = self.copy() if use_copy else self
        if env is not None:
            cfg.env = env
        return self.algo_class(config=cfg)

    build = build_algo


def _refuse(method: str, unsupported: dict) -> None:
    if unsupported:
        raise TypeError(f"AlgorithmConfig.{method}() got settings miniray.rllib does not support: "
                        f"{sorted(unsupported)}. See docs/rllib.md for the supported ones.")

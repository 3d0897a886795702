"""What an env creator receives, and how ``.environment(env)`` becomes a creator.

    .environment("corridor")     registered with tune.registry.register_env ──► that creator
    .environment("CartPole-v1")  a gymnasium id ──► GymEnvCreator("CartPole-v1")
    .environment(MyEnvClass)     a class or function ──► called with the EnvContext

The driver resolves the name once, in its own process (registrations are per process), and ships
the creator itself to the env runner actors, pickled by cloudpickle.
"""
from __future__ import annotations


class EnvContext(dict):
    """``env_config`` as a dict, plus which runner (``worker_index``, 0 = the driver's) and which
    env of its vector (``vector_index``) this is, as RLlib's EnvContext has them."""

    def __init__(self, env_config: dict | None = None, worker_index: int = 0, vector_index: int = 0,
                 num_workers: int = 0):
        super().__init__(env_config or {})
        self.worker_index, self.vector_index, self.num_workers = worker_index, vector_index, num_workers

    def __reduce__(self):
        return (EnvContext, (dict(self), self.worker_index, self.vector_index, self.num_workers))


class GymEnvCreator:
    """``gymnasium.make(env_id, **env_config)``, picklable (gymnasium is imported in the runner)."""

    def __init__(self, env_id: str):
        self.env_id = env_id

    def __call__(self, env_config):
        import gymnasium

        return gymnasium.make(self.env_id, **dict(env_config or {}))

    def __repr__(self):
        return f"GymEnvCreator({self.env_id!r})"


def resolve_env_creator(env):
    """A callable ``creator(env_context) -> env`` for what ``.environment(env=...)`` was given."""
    if env is None:
        raise ValueError("No environment set: call config.environment('CartPole-v1') (a gymnasium id, "
                         "a name given to miniray.tune.registry.register_env, or an env class)")
    if callable(env):
        return env
    if not isinstance(env, str):
        raise TypeError(f"environment(env=...) takes a name or an env class/creator, got {type(env).__name__}")
    from miniray.tune.registry import get_env_creator

    creator = get_env_creator(env)
    if creator is not None:
        return creator
    import gymnasium

    if env not in gymnasium.envs.registry:
        raise ValueError(f"Unknown environment {env!r}: it is neither registered here with "
                         f"miniray.tune.registry.register_env({env!r}, lambda cfg: MyEnv(cfg)) nor a "
                         f"gymnasium id (e.g. 'CartPole-v1', 'Acrobot-v1')")
    return GymEnvCreator(env)


def make_env(creator, env_config=None, worker_index: int = 0, vector_index: int = 0, num_workers: int = 0):
    return creator(EnvContext(env_config, worker_index, vector_index, num_workers))

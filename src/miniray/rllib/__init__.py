"""miniray.rllib: RLlib's shape on miniray actors, with numpy and gymnasium only.

    from miniray.rllib.algorithms.ppo import PPOConfig
    algo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).build_algo()
    for i in range(20):
        print(algo.train()["env_runners"]["episode_return_mean"])

    algorithms/algorithm_config.py  the builder config (RLlib's method and key names)
    algorithms/algorithm.py         the loop: put weights -> runners sample in parallel -> learner updates
    algorithms/ppo, algorithms/pg   the two losses (PPO's clipped surrogate, REINFORCE with a baseline)
    env/env_runner.py               EnvRunner actors: a vector of envs stepped with the latest weights
    core/                           numpy MLP with hand-written backprop, Adam, the policy, the Learner
    evaluation/postprocessing.py    GAE

Custom environments: ``from miniray.tune.registry import register_env``.  gymnasium is imported
when an environment is made, never by ``import miniray``.
"""
from miniray.rllib.algorithms.algorithm import Algorithm
from miniray.rllib.algorithms.algorithm_config import AlgorithmConfig

__all__ = ["Algorithm", "AlgorithmConfig"]

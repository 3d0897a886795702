"""Graded tests for exercise 10 (reinforcement learning on actors).

Each ``test_task_N_M_*`` runs in the sandbox that executed the submitted notebook; ``nb`` is that
notebook's namespace.  Returns are checked against a plain Python loop, advantages against
miniray.rllib's own ``compute_gae`` and a hand-computed trajectory, and the broadcast against the
runtime's event log (one put, read by every runner's sample, the samples overlapping in time).
"""
import numpy as np

from miniray.grading.checks import events_during, ran_concurrently, shared_dependency, tasks_named

EXERCISE = "10_rllib"

HINTS = {
    "10.1": "Loop t from the last step down to 0, keeping running = rewards[t] + gamma * running.",
    "10.2": "deltas = r + gamma * next_values - values; then backwards: A = delta[t] + gamma * lambda_ * (1 - dones[t]) * A.",
    "10.3": "ref = ray.put(weights) once, then ray.get([r.sample.remote(ref, num_steps) for r in runners]).",
}


def _loop_returns(rewards, gamma):
    return [sum(gamma ** k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]


def test_task_10_1_returns_match_a_plain_loop(nb):
    rewards = list(np.random.default_rng(0).normal(size=12))
    got = np.asarray(nb.returns_to_go(rewards, 0.9), dtype=float)
    assert got.shape == (12,), f"returns_to_go should return one value per reward (12), got shape {got.shape}."
    np.testing.assert_allclose(got, _loop_returns(rewards, 0.9), rtol=1e-9,
                               err_msg="returns_to_go(rewards, 0.9) differs from sum_k 0.9**k * rewards[t+k].")


def test_task_10_1_gamma_one_and_zero(nb):
    assert list(np.asarray(nb.returns_to_go([1.0, 2.0, 3.0], 1.0))) == [6.0, 5.0, 3.0], \
        "With gamma=1 the return to go is the sum of the rewards left: [6, 5, 3] for [1, 2, 3]."
    assert list(np.asarray(nb.returns_to_go([1.0, 2.0, 3.0], 0.0))) == [1.0, 2.0, 3.0], \
        "With gamma=0 the return to go is just each step's reward."


def test_task_10_2_hand_computed_trajectory(nb):
    got = np.asarray(nb.advantages([1, 1, 1], [0.5, 0.4, 0.3], [0.4, 0.3, 0.0], [0, 0, 1],
                                   gamma=0.9, lambda_=0.8), dtype=float)
    np.testing.assert_allclose(got, [1.84928, 1.374, 0.7], rtol=1e-6,
                               err_msg="For the slide's trajectory the advantages are [1.84928, 1.374, 0.7].")


def test_task_10_2_matches_rllib_with_episode_ends(nb):
    from miniray.rllib.evaluation.postprocessing import compute_gae

    rng = np.random.default_rng(1)
    T = 40
    rewards, values, next_values = rng.normal(size=T), rng.normal(size=T), rng.normal(size=T)
    dones = rng.random(T) < 0.2
    for gamma, lam in ((0.99, 0.95), (0.9, 1.0), (0.5, 0.0)):
        got = np.asarray(nb.advantages(rewards, values, next_values, dones, gamma=gamma, lambda_=lam), float)
        np.testing.assert_allclose(got, compute_gae(rewards, values, next_values, dones, gamma, lam), rtol=1e-9,
                                   err_msg=f"advantages(..., gamma={gamma}, lambda_={lam}) is off; does an "
                                           f"episode end (dones[t]) stop the recursion at t?")


def _runners(n=2):
    import miniray as ray
    from miniray.rllib.env.env_context import GymEnvCreator
    from miniray.rllib.env.env_runner import EnvRunner

    Runner = ray.remote(EnvRunner)
    runners = [Runner.remote(GymEnvCreator("CartPole-v1"), num_envs=2, seed=0, worker_index=i + 1)
               for i in range(n)]
    ray.get([r.pid.remote() for r in runners])        # started before the graded call
    return runners


def test_task_10_3_one_fragment_per_runner(nb):
    import miniray as ray
    from miniray.rllib.core.policy import Policy

    runners = _runners()
    try:
        frags = nb.sample_all(runners, Policy(4, 2, seed=0).get_weights(), 50)
        assert isinstance(frags, list) and len(frags) == 2, "sample_all should return a list with one fragment per runner."
        assert all(isinstance(f, dict) and f.get("env_steps") == 100 for f in frags), \
            "Each fragment should be what runner.sample returned (a dict; 50 steps x 2 envs = 100 env_steps)."
    finally:
        for r in runners:
            ray.kill(r)


def test_task_10_3_weights_put_once_and_sampled_in_parallel(nb):
    import miniray as ray
    from miniray.rllib.core.policy import Policy

    runners = _runners()
    try:
        weights = Policy(4, 2, seed=0).get_weights()
        _, evs = events_during(nb.sample_all, runners, weights, 1500)
    finally:
        for r in runners:
            ray.kill(r)
    puts = [e for e in evs if e["kind"] == "put"]
    samples = tasks_named(evs, "sample")
    assert len(samples) == 2, f"Call sample.remote once on each of the 2 runners (saw {len(samples)} calls)."
    assert len(puts) == 1, f"Put the weights into the store exactly once with ray.put (saw {len(puts)} puts)."
    assert puts[0]["object_id"] in shared_dependency(samples), \
        "Pass the ref from ray.put to every runner's sample.remote, not the array itself."
    assert ran_concurrently(evs), ("The two runners did not sample at the same time: call sample.remote on "
                                   "every runner first, then ray.get the list of refs.")

"""miniray.rllib on CartPole-v1: env steps and wall time for PPO to reach a mean return of 450, PG
alongside, and how env-runner sampling scales from one runner to two.

    python benchmarks/rllib.py                    # 3 PPO seeds, PG, RLlib-default PPO, sampling
    python benchmarks/rllib.py --quick --no-write # a smoke run in seconds

Targets (issue 19): PPO reaches 450 within 200,000 env steps (RLlib's tuned CartPole example's
budget) in under 3 minutes here; two env runners sample >= 1.7x the env steps/s of one.
Results: benchmarks/results/rllib-<date>.{md,json,png}.  Wall time counts from build_algo() (actor
start-up included) to the iteration that crossed 450.  ``episode_return_mean`` is RLlib's: the mean
over the last 100 finished episodes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

try:
    import miniray
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import miniray

from miniray.rllib.algorithms.pg import PGConfig
from miniray.rllib.algorithms.ppo import PPOConfig

TARGET, BUDGET = 450.0, 200_000


def tuned_ppo(seed: int) -> PPOConfig:
    """The settings this benchmark reports (found by a small sweep of lr, minibatch, batch size)."""
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=8)
            .training(lr=5e-4, train_batch_size=4000, minibatch_size=256, num_epochs=10, lambda_=0.95,
                      vf_clip_param=1e6, vf_loss_coeff=0.5, model={"fcnet_hiddens": [64, 64]})
            .debugging(seed=seed))


def default_ppo(seed: int) -> PPOConfig:
    """RLlib's PPO defaults (lr 5e-5, 30 epochs, clip 0.3, lambda 1) with 8 envs per runner."""
    return (PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2, num_envs_per_env_runner=8)
            .debugging(seed=seed))


def pg(seed: int) -> PGConfig:
    return (PGConfig().environment("CartPole-v1").env_runners(num_env_runners=2, num_envs_per_env_runner=8)
            .training(train_batch_size=4000, lr=4e-3).debugging(seed=seed))


def learn(name: str, config, budget: int, target: float) -> dict:
    t0 = time.perf_counter()
    algo = config.build_algo()
    curve, hit = [], None
    try:
        while True:
            r = algo.train()
            steps, ret = r["num_env_steps_sampled_lifetime"], r["env_runners"]["episode_return_mean"]
            curve.append((steps, round(ret, 1), round(time.perf_counter() - t0, 2)))
            if hit is None and ret >= target:
                hit = {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "iterations": r["training_iteration"]}
                break
            if steps >= budget:
                break
    finally:
        algo.stop()
    out = {"name": name, "seed": config.seed, "hit": hit, "final_return": curve[-1][1], "curve": curve}
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
    return out


def sampling_rates(num_envs: int, rounds: int, steps: int) -> dict:
    """Env steps/s of one runner and of two, sampling with fixed weights (no learning), measured in
    alternating rounds so both see the same machine; the medians of the rounds, and their ratio."""
    algos = {n: (PPOConfig().environment("CartPole-v1")
                 .env_runners(num_env_runners=n, num_envs_per_env_runner=num_envs, num_cpus_per_env_runner=0.5)
                 .debugging(seed=0).build_algo()) for n in (1, 2)}
    try:
        weights = miniray.put(algos[1].get_weights()["default_policy"])
        rates, cpu_per_kstep = {1: [], 2: []}, {1: [], 2: []}
        for n, algo in algos.items():                                              # warm: processes up
            miniray.get([r.sample.remote(weights, 10) for r in algo.env_runners])
        for _ in range(rounds):
            for n, algo in algos.items():
                t0 = time.perf_counter()
                frags = miniray.get([r.sample.remote(weights, steps) for r in algo.env_runners])
                rates[n].append(sum(f["env_steps"] for f in frags) / (time.perf_counter() - t0))
                cpu_per_kstep[n] += [1e6 * f["sample_cpu_s"] / f["env_steps"] for f in frags]
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        return {"envs_per_runner": num_envs, "one_runner": one, "two_runners": two, "ratio": two / one,
                "runner_cpu_ms_per_1k_steps": {"one": statistics.median(cpu_per_kstep[1]),
                                               "two": statistics.median(cpu_per_kstep[2])},
                "rounds": rounds, "steps_per_env_per_round": steps}
    finally:
        for algo in algos.values():
            algo.stop()


def figure(runs: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = {"PPO (tuned)": "tab:blue", "PPO (RLlib defaults)": "tab:green", "PG": "tab:orange"}
    for run in runs:
        steps, ret, secs = zip(*run["curve"])
        label = f"{run['name']} seed {run['seed']}"
        a.plot(steps, ret, color=colours.get(run["name"]), alpha=0.8, label=label)
        b.plot(secs, ret, color=colours.get(run["name"]), alpha=0.8, label=label)
    for ax, xlabel in ((a, "env steps"), (b, "wall seconds (from build_algo)")):
        ax.axhline(TARGET, color="grey", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("episode_return_mean (last 100)")
        ax.set_ylim(0, 510)
    a.axvline(BUDGET, color="red", ls=":", lw=1)
    a.legend(fontsize=7, loc="lower right")
    fig.suptitle("miniray.rllib on CartPole-v1 (2 env runners x 8 envs, numpy)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def table(runs: list[dict], rates: list[dict], meta: dict) -> str:
    lines = [f"# miniray.rllib on CartPole-v1, {meta['date']}", "",
             f"{meta['machine']}, load average {meta['load_average_1min_at_end']:.1f} at the end.", ""]
    if runs:
        lines += [f"Target: mean return {TARGET:g} within {BUDGET:,} env steps, in under 180 s.", "",
                  "| run | seed | env steps to 450 | wall s to 450 | iterations | final return |",
                  "|---|---|---|---|---|---|"]
    for r in runs:
        hit = r["hit"]
        reached = (f"{hit['steps']:,} | {hit['seconds']} | {hit['iterations']}" if hit else
                   f"not reached in {r['curve'][-1][0]:,} | - | -")
        lines.append(f"| {r['name']} | {r['seed']} | {reached} | {r['final_return']} |")
    if rates:
        lines += ["", "Sampling only (fixed weights), median of alternating rounds; target: two runners >= 1.7x "
                  "one.", "", "| envs per runner | one runner, env steps/s | two runners, env steps/s | two vs one "
                  "| runner CPU ms per 1k steps, one / two |", "|---|---|---|---|---|"]
    for r in rates:
        cpu = r["runner_cpu_ms_per_1k_steps"]
        lines.append(f"| {r['envs_per_runner']} | {r['one_runner']:,.0f} | {r['two_runners']:,.0f} | {r['ratio']:.2f}x "
                     f"| {cpu['one']:.1f} / {cpu['two']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the script runs")
    p.add_argument("--only", choices=("learning", "sampling"), help="one half of the benchmark")
    p.add_argument("--tag", default="", help="appended to the result files' names (run2, ...)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    miniray.init(num_cpus=2)
    budget = 8_000 if args.quick else BUDGET
    seeds = 1 if args.quick else args.seeds
    runs, rates = [], []
    if args.only != "sampling":
        runs = [learn("PPO (tuned)", tuned_ppo(s), budget, TARGET) for s in range(seeds)]
        runs.append(learn("PG", pg(0), budget, TARGET))
        runs.append(learn("PPO (RLlib defaults)", default_ppo(0), budget, TARGET))
    rounds, steps = (2, 50) if args.quick else (20, 500)
    if args.only != "learning":
        rates = [sampling_rates(envs, rounds, steps) for envs in (1, 8)]
    for r in rates:
        print(json.dumps(r), flush=True)
    miniray.shutdown()
    meta = {"date": datetime.date.today().isoformat(), "load_average_1min_at_end": os.getloadavg()[0],
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {__import__('numpy').__version__}"}
    md = table(runs, rates, meta)
    print(md)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        name = f"rllib-{meta['date']}" + (f"-{args.tag}" if args.tag else "")
        stem = os.path.join(args.out, name)
        with open(stem + ".json", "w") as f:
            json.dump({"meta": meta, "runs": runs, "sampling_steps_per_s": rates}, f, indent=1)
        with open(stem + ".md", "w") as f:
            f.write(md + (f"\n![learning curves]({name}.png)\n" if runs else ""))
        if runs:
            figure(runs, stem + ".png")
        print("wrote", stem + ".{md,json,png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

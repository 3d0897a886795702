"""Ray Tune's documented examples (no deep-learning framework) run unchanged with ray aliased to
miniray, in a real driver process that starts its own runtime and exits on its own."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import driver_script

ALIAS = '''
import sys
import miniray, miniray.tune, miniray.tune.schedulers, miniray.tune.search, miniray.train
import miniray.tune.stopper, miniray.tune.search.optuna
for _name in list(sys.modules):
    if _name == "miniray" or _name.startswith("miniray."):
        sys.modules["ray" + _name[len("miniray"):]] = sys.modules[_name]
'''

EXAMPLES = '''
# --- Tune's key concepts: a function trainable, constants only
from ray import tune

def objective(x, a, b):
    return a * (x ** 0.5) + b

def trainable(config):
    for x in range(20):
        score = objective(x, config["a"], config["b"])
        tune.report({"score": score})

tuner = tune.Tuner(trainable, param_space={"a": 2, "b": 4})
results = tuner.fit()
print("KEY", round(results[0].metrics["score"], 4), results[0].metrics["training_iteration"])

# --- The class API with a stop dict
class Trainable(tune.Trainable):
    def setup(self, config):
        self.x = 0
        self.a = config["a"]
        self.b = config["b"]

    def step(self):
        score = objective(self.x, self.a, self.b)
        self.x += 1
        return {"score": score}

tuner = tune.Tuner(Trainable, run_config=tune.RunConfig(stop={"training_iteration": 20},
                   checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
                   param_space={"a": 2, "b": 4})
results = tuner.fit()
print("CLASS", round(results[0].metrics["score"], 4))

# --- The quickstart: a returned dict, grid_search and choice
def objective2(config):
    score = config["a"] ** 2 + config["b"]
    return {"score": score}

search_space = {"a": tune.grid_search([0.001, 0.01, 0.1, 1.0]), "b": tune.choice([1, 2, 3])}
tuner = tune.Tuner(objective2, param_space=search_space)
results = tuner.fit()
best = results.get_best_result(metric="score", mode="min")
print("QUICK", best.metrics["score"] == min(r.metrics["score"] for r in results), len(results),
      sorted(r.config["a"] for r in results) == [0.001, 0.01, 0.1, 1.0])

# --- Schedulers and search from their documented module paths
from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter, BasicVariantGenerator
from ray.train import RunConfig, CheckpointConfig, FailureConfig
from ray import train

def train_fn(config):
    for step in range(30):
        train.report({"mean_accuracy": 1 - abs(config["lr"] - 0.01) * step / 30,
                      "step": step})

asha = ASHAScheduler(time_attr="training_iteration", metric="mean_accuracy", mode="max",
                     max_t=30, grace_period=3, reduction_factor=3, brackets=1)
results = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                     tune_config=tune.TuneConfig(num_samples=12, scheduler=asha,
                                                 search_alg=BasicVariantGenerator(random_state=0)),
                     run_config=RunConfig(name="asha_example",
                                          failure_config=FailureConfig(max_failures=2))).fit()
best = results.get_best_result()
print("ASHA", len(results), sum(r.metrics["training_iteration"] < 30 for r in results) > 0,
      abs(best.config["lr"] - 0.01) < 0.05)
df = results.get_dataframe()
print("DF", "config/lr" in df.columns, len(df))
'''


def test_ray_docs_tune_examples_run_unchanged(tmp_path):
    path = driver_script(tmp_path, ALIAS + EXAMPLES)
    env = dict(os.environ, MINIRAY_RESULTS_DIR=str(tmp_path / "results"), PYTHONUNBUFFERED="1")
    out = subprocess.run([sys.executable, path], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines()
                 if line.split(" ", 1)[0] in ("KEY", "CLASS", "QUICK", "ASHA", "DF"))
    assert lines["KEY"] == f"{round(2 * 19 ** 0.5 + 4, 4)} 20"
    assert lines["CLASS"] == f"{round(2 * 19 ** 0.5 + 4, 4)}"
    assert lines["QUICK"] == "True 4 True"
    assert lines["ASHA"] == "12 True True"
    assert lines["DF"] == "True 12"
    assert os.path.isdir(tmp_path / "results" / "asha_example")

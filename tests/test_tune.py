"""miniray.tune end to end on a real two-CPU runtime: trials in actors, results on disk."""
from __future__ import annotations

import glob
import json
import os
import time

import pytest

import miniray
from miniray import train, tune
from miniray.tune.schedulers import ASHAScheduler, PopulationBasedTraining


def objective(config):
    for step in range(config.get("steps", 10)):
        tune.report({"score": -(config["lr"] - 0.1) ** 2 - (config["m"] - 0.9) ** 2 + step * 1e-4})


def run(tmp_path, trainable, space, name="exp", **tune_kw):
    run_kw = {k: tune_kw.pop(k) for k in ("stop", "checkpoint_config", "failure_config",
                                          "callbacks") if k in tune_kw}
    return tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(**tune_kw),
                      run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0,
                                                **run_kw)).fit()


def test_grid_finds_the_best_config_and_lays_out_the_experiment_as_ray_does(rt, tmp_path):
    grid = {"lr": tune.grid_search([0.001, 0.01, 0.1, 1.0]),
            "m": tune.grid_search([0.5, 0.8, 0.9, 0.99])}
    results = run(tmp_path, objective, grid, metric="score", mode="max")
    assert len(results) == 16 and results.num_terminated == 16 and results.num_errors == 0
    best = results.get_best_result()
    assert best.config == {"lr": 0.1, "m": 0.9}
    assert best.metrics["training_iteration"] == 10
    assert len(best.metrics_dataframe) == 10
    assert results.get_best_result(metric="score", mode="min").config == {"lr": 1.0, "m": 0.5}
    root = tmp_path / "exp"
    assert (root / "tuner.pkl").exists() and glob.glob(str(root / "experiment_state-*.json"))
    assert tune.Tuner.can_restore(root) and not tune.Tuner.can_restore(tmp_path)
    trial_dir = best.path
    assert os.path.basename(trial_dir).startswith("objective_")
    assert json.load(open(os.path.join(trial_dir, "params.json"))) == {"lr": 0.1, "m": 0.9}
    rows = [json.loads(line) for line in open(os.path.join(trial_dir, "result.json"))]
    assert [r["training_iteration"] for r in rows] == list(range(1, 11))
    assert open(os.path.join(trial_dir, "progress.csv")).readline().startswith("score,")
    df = results.get_dataframe()
    assert len(df) == 16 and {"config/lr", "config/m", "score", "logdir"} <= set(df.columns)
    assert results[0].metrics["config"] == results[0].config
    png = results.plot()._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_size(png) == (750, 400)
    assert png_size(results.plot(figsize=(5, 2.5))._repr_png_()) == (500, 250)   # fits a slide
    with pytest.raises(ValueError, match="figsize"):
        results.plot(figsize=(5,))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_asha_stops_most_random_trials_early(rt, tmp_path):
    space = {"lr": tune.uniform(0, 1), "m": tune.uniform(0, 1), "steps": 9}
    asha = ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)
    results = run(tmp_path, objective, space, metric="score", mode="max", num_samples=24,
                  scheduler=asha)
    stopped = [r for r in results if r.stopped_early]
    assert len(results) == 24 and len(stopped) >= 12
    assert all(r.metrics["training_iteration"] < 9 for r in stopped)
    assert all(r.metrics["training_iteration"] == 9 for r in results if not r.stopped_early)
    finished = [r.metrics["score"] for r in results if not r.stopped_early]
    assert results.get_best_result().metrics["score"] == max(finished)


class Counter(tune.Trainable):
    def setup(self, config):
        self.total = 0

    def step(self):
        self.total += self.config["inc"]
        return {"total": self.total}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total")) as f:
            self.total = int(f.read())


def test_class_trainable_checkpoints_keep_the_best_two(rt, tmp_path):
    results = run(tmp_path, Counter, {"inc": tune.grid_search([1, 2])}, metric="total",
                  mode="max", stop={"training_iteration": 5},
                  checkpoint_config=train.CheckpointConfig(
                      num_to_keep=2, checkpoint_frequency=1, checkpoint_score_attribute="total"))
    best = results.get_best_result()
    assert best.metrics["total"] == 10 and best.metrics["training_iteration"] == 5
    kept = sorted(os.path.basename(p) for p in glob.glob(os.path.join(best.path, "checkpoint_*")))
    assert len(kept) == 2
    with best.checkpoint.as_directory() as d:
        assert open(os.path.join(d, "total")).read() == "10"
    restored = Counter(config={"inc": 2})
    restored.restore(best.checkpoint.path)
    assert restored.total == 10


class Shaped:
    """Not a tune.Trainable, only its shape (as RLlib's algorithms have it)."""

    def __init__(self, config=None):
        self.config, self.i = config, 0

    def train(self):
        self.i += 1
        return {"reward": self.i * self.config["k"]}

    def save_checkpoint(self, d):
        return {"i": self.i}

    def load_checkpoint(self, state):
        self.i = state["i"]

    def stop(self):
        pass


def test_any_class_with_the_trainable_shape_runs_by_registered_name(rt, tmp_path):
    tune.register_trainable("shaped", Shaped)
    results = run(tmp_path, "shaped", {"k": 3}, metric="reward", mode="max",
                  stop={"training_iteration": 4})
    assert results[0].metrics["reward"] == 12
    assert os.path.basename(results[0].path).startswith("shaped_")


def flaky(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "step")).read())
    for step in range(start, 6):
        if step == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise ValueError("flaky failure at step 3")
        if config["always_fail"] and step == 1:
            raise KeyError("this trial always fails")
        d = os.path.join(train.get_context().get_trial_dir(), f"tmp{step}")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "step"), "w").write(str(step + 1))
        tune.report({"step": step + 1, "resumed": start}, checkpoint=tune.Checkpoint.from_directory(d))


class Recorder(tune.Callback):
    def __init__(self):
        self.seen = []

    def on_trial_error(self, iteration, trials, trial, **info):
        self.seen.append(("error", trial.config["always_fail"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.seen.append(("complete", trial.config["always_fail"]))


def test_failed_trials_retry_from_their_checkpoint_and_errors_are_kept(rt, tmp_path):
    space = {"marker": str(tmp_path / "marker"), "always_fail": tune.grid_search([False, True])}
    recorder = Recorder()
    results = run(tmp_path, flaky, space, metric="step", mode="max", callbacks=[recorder],
                  failure_config=train.FailureConfig(max_failures=1))
    assert sorted(recorder.seen) == [("complete", False), ("error", False), ("error", True),
                                     ("error", True)]
    copied = results[0].checkpoint.to_directory(str(tmp_path / "copy"))
    assert open(os.path.join(copied, "step")).read() == "6"
    ok, bad = results[0], results[1]
    assert ok.error is None and ok.metrics["step"] == 6 and ok.metrics["resumed"] == 3
    assert list(ok.metrics_dataframe["step"]) == [1, 2, 3, 4, 5, 6]
    assert results.num_errors == 1 and isinstance(bad.error, KeyError)
    assert "this trial always fails" in open(os.path.join(bad.path, "error.txt")).read()
    assert results.get_best_result().config["always_fail"] is False


def test_with_parameters_puts_the_object_once(rt, tmp_path):
    import numpy as np

    data = np.arange(400_000, dtype=np.float64)          # 3.2 MB: goes to the store

    def uses_data(config, data=None):
        tune.report({"sum": float(data.sum()) * config["x"]})

    before = miniray.events.cursor()
    results = run(tmp_path, tune.with_parameters(uses_data, data=data),
                  {"x": tune.grid_search([1, 2, 3, 4])}, metric="sum", mode="max")
    assert results.get_best_result().metrics["sum"] == pytest.approx(data.sum() * 4)
    puts = [e for e in miniray.events.events(before) if e["kind"] == "put" and e["size"] > 3e6]
    assert len(puts) == 1


def test_resources_and_max_concurrent_limit_how_many_run_at_once(rt, tmp_path):
    def timed(config):
        start = time.time()
        time.sleep(0.05)
        tune.report({"start": start, "end": time.time()})

    def overlaps(results):
        spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
        return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))

    space = {"i": tune.grid_search([0, 1, 2])}
    assert not overlaps(run(tmp_path, tune.with_resources(timed, {"cpu": 2}), space, name="a"))
    assert not overlaps(run(tmp_path, timed, space, name="b", max_concurrent_trials=1))
    with pytest.raises(tune.TuneError, match="cluster has 2"):
        run(tmp_path, tune.with_resources(timed, {"cpu": 3}), space, name="c")


def test_errors_that_teach_before_or_at_the_first_result(rt, tmp_path):
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        run(tmp_path, objective, {"lr": 0.1, "m": 0.9}, name="noscore", scheduler=ASHAScheduler())
    assert not glob.glob(str(tmp_path / "noscore" / "objective_*"))
    with pytest.raises(tune.TuneError, match="'loss' is not in the results"):
        run(tmp_path, objective, {"lr": 0.1, "m": 0.9}, name="wrong", metric="loss", mode="min")

    def silent(config):
        return None

    results = run(tmp_path, silent, {}, name="silent", metric="score", mode="max")
    assert "without calling tune.report" in str(results.errors[0])
    with pytest.raises(KeyError, match="No trial reported the metric 'nope'"):
        results = run(tmp_path, objective, {"lr": 0.1, "m": 0.9}, name="ok")
        results.get_best_result(metric="nope", mode="max")
    with pytest.raises(RuntimeError, match="outside a Tune trial"):
        tune.report({"x": 1})


def pbt_trainable(config):
    value, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            value, start = json.load(open(os.path.join(d, "state.json")))
    for step in range(start, 12):
        time.sleep(0.04)                     # long enough that both slots' trials overlap
        value += config["lr"]
        d = os.path.join(train.get_context().get_trial_dir(), "tmp")
        os.makedirs(d, exist_ok=True)
        json.dump([value, step + 1], open(os.path.join(d, "state.json"), "w"))
        tune.report({"value": value}, checkpoint=tune.Checkpoint.from_directory(d))


def test_pbt_exploits_by_checkpoint_and_logs_who_copied_whom(rt, tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  hyperparam_mutations={"lr": tune.uniform(0.0, 1.0)},
                                  quantile_fraction=0.25, resample_probability=0.0, seed=1)
    results = run(tmp_path, pbt_trainable, {"lr": tune.grid_search([0.1, 0.2, 0.3, 1.0])},
                  metric="value", mode="max", scheduler=pbt)
    assert pbt.exploit_log, "nobody exploited anybody"
    first = pbt.exploit_log[0]
    donor = next(r for r in results if r.trial_id == first["donor_id"])
    target = next(r for r in results if r.trial_id == first["trial_id"])
    assert first["donor_id"] != first["trial_id"]
    assert first["new_config"]["lr"] in (pytest.approx(first["donor_config"]["lr"] * 1.2),
                                        pytest.approx(first["donor_config"]["lr"] * 0.8))
    assert target.exploits and target.exploits[0]["donor"] == donor.trial_id
    # The target resumed from the donor's checkpoint: its iterations go on from the donor's.
    restarts = [r for r in target.history if r["iterations_since_restore"] == 1]
    assert [r["training_iteration"] for r in restarts][:2] == [1, first["donor_iteration"] + 1]
    lines = [json.loads(l) for l in open(tmp_path / "exp" / "pbt_global.txt")]
    assert len(lines) == len(pbt.exploit_log) and lines[0][4]["lr"] == first["donor_config"]["lr"]
    assert all(r.metrics["training_iteration"] == 12 for r in results)


def resumable(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "step")).read())
    for step in range(start, 9):
        d = os.path.join(train.get_context().get_trial_dir(), f"tmp{step}")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "step"), "w").write(str(step + 1))
        tune.report({"score": config["q"] * (step + 1)}, checkpoint=tune.Checkpoint.from_directory(d))


def test_hyperband_pauses_and_resumes_trials_from_checkpoints(rt, tmp_path):
    from miniray.tune.schedulers import HyperBandScheduler

    hb = HyperBandScheduler(max_t=9, reduction_factor=3)
    results = run(tmp_path, resumable, {"q": tune.grid_search(list(range(9)))}, metric="score",
                  mode="max", scheduler=hb)
    iterations = {r.config["q"]: r.metrics["training_iteration"] for r in results}
    assert iterations == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 3, 7: 3, 8: 9}
    q_of = {r.trial_id: r.config["q"] for r in results}
    assert [[q_of[t] for t in d[2]] for d in hb.decisions] == [[8, 7, 6], [8]]
    best = results.get_best_result()
    assert best.config["q"] == 8 and list(best.metrics_dataframe["training_iteration"]) == list(range(1, 10))


def test_time_budget_ends_an_endless_search(rt, tmp_path):
    def forever(config):
        while True:
            time.sleep(0.01)
            tune.report({"x": config["x"]})

    start = time.time()
    results = run(tmp_path, forever, {"x": tune.uniform(0, 1)}, num_samples=-1, time_budget_s=1.5)
    assert 1.5 <= time.time() - start < 6
    assert len(results) >= 2 and all(r.status == "TERMINATED" for r in results
                                     if r.metrics.get("training_iteration"))


def crashy(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "step")).read())
    for step in range(start, 4):
        if step == 2 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            if config["how"] == "exit":
                os._exit(3)                          # the trial's actor process dies
            raise RuntimeError("fails once")
        d = os.path.join(train.get_context().get_trial_dir(), f"tmp{step}")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "step"), "w").write(str(step + 1))
        tune.report({"step": step + 1}, checkpoint=tune.Checkpoint.from_directory(d))


def test_a_dead_actor_is_a_failure_retried_on_a_new_one(rt, tmp_path):
    results = run(tmp_path, crashy, {"marker": str(tmp_path / "m"), "how": "exit"},
                  metric="step", mode="max", failure_config=train.FailureConfig(max_failures=1))
    assert results.num_errors == 0 and results[0].metrics["step"] == 4
    assert list(results[0].metrics_dataframe["step"]) == [1, 2, 3, 4]


def test_fail_fast_and_resume_errored(rt, tmp_path):
    space = {"marker": str(tmp_path / "m"), "how": "raise"}
    with pytest.raises(RuntimeError, match="fails once"):
        run(tmp_path, crashy, space, name="ff", failure_config=train.FailureConfig(fail_fast="raise"))
    os.remove(tmp_path / "m")
    results = run(tmp_path, crashy, space, name="errored", metric="step", mode="max")
    assert results.num_errors == 1 and results[0].metrics["step"] == 2
    path = str(tmp_path / "errored")
    kept = tune.Tuner.restore(path, trainable=crashy).fit()
    assert kept.num_errors == 1                       # errored trials stay errored by default
    resumed = tune.Tuner.restore(path, trainable=crashy, resume_errored=True).fit()
    assert resumed.num_errors == 0 and resumed[0].metrics["step"] == 4
    assert list(resumed[0].metrics_dataframe["step"]) == [1, 2, 3, 4]


class LockedSearcher(tune.search.Searcher):
    """A user's searcher holding a lock: it cannot be pickled for Tuner.restore."""

    def __init__(self):
        import threading

        super().__init__()
        self.lock, self.n = threading.Lock(), 0

    def suggest(self, trial_id):
        self.n += 1
        return {"lr": 0.1, "m": 0.5 + self.n / 10}


def test_an_unpicklable_searcher_still_runs_with_a_warning(rt, tmp_path):
    with pytest.warns(RuntimeWarning, match="could not be pickled|could not save"):
        results = run(tmp_path, objective, {}, metric="score", mode="max", num_samples=3,
                      search_alg=LockedSearcher())
    assert len(results) == 3 and results.get_best_result().config["m"] == pytest.approx(0.8)


def test_actors_are_reused_unless_told_not_to(rt, tmp_path):
    space = {"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4]), "m": 0.9, "steps": 2}
    reused = run(tmp_path, objective, space, name="reused", max_concurrent_trials=1)
    assert len({r.metrics["pid"] for r in reused}) == 1
    fresh = run(tmp_path, objective, space, name="fresh", max_concurrent_trials=1,
                reuse_actors=False)
    assert len({r.metrics["pid"] for r in fresh}) == 4

"""Tuner.restore after the driver was SIGKILLed mid-experiment, in real subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from helpers import driver_script  # noqa: E402

BODY = '''
import json, os, sys, time
import miniray
from miniray import tune

LOG = {log!r}

def slow(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = int(open(os.path.join(d, "step")).read())
    with open(LOG, "a") as f:
        f.write(json.dumps([config["i"], start]) + "\\n")
    for step in range(start, config["steps"]):
        time.sleep(0.03)
        d = os.path.join(tune.get_trial_dir(), "tmp")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "step"), "w").write(str(step + 1))
        tune.report({{"score": config["i"] * 100 + step}},
                    checkpoint=tune.Checkpoint.from_directory(d))

miniray.init(num_cpus=2)
path = {path!r}
if sys.argv[1] == "fit":
    space = {{"i": tune.grid_search([0, 1, 2, 3]),
              "steps": tune.sample_from(lambda spec: 5 if spec.config.i == 0 else 80)}}
    tune.Tuner(slow, param_space=space,
               tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
               run_config=tune.RunConfig(name="exp", storage_path=os.path.dirname(path),
                                         verbose=0)).fit()
    print("FINISHED-WITHOUT-KILL")
else:
    print("CAN", tune.Tuner.can_restore(path))
    results = tune.Tuner.restore(path, trainable=slow).fit()
    print("RESULT", json.dumps(sorted([r.config["i"], r.metrics["training_iteration"], r.error is None]
                                      for r in results)))
miniray.shutdown()
'''


def _state(path):
    files = [f for f in os.listdir(path) if f.startswith("experiment_state-")] if os.path.isdir(path) else []
    if not files:
        return {}
    try:
        with open(os.path.join(path, files[0])) as f:
            return {t["config"]["i"]: t["status"] for t in json.load(f)["trials"]}
    except (ValueError, KeyError, OSError):
        return {}


def test_restore_after_sigkill_resumes_unfinished_trials_only(tmp_path):
    path, log = str(tmp_path / "exp"), str(tmp_path / "starts.log")
    script = driver_script(tmp_path, BODY.format(log=log, path=path))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, script, "fit"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    # Kill once trial 0 (5 steps) is TERMINATED and two long ones have a 4th checkpoint.
    while time.monotonic() < deadline:
        state = _state(path)
        started = [d for d in os.listdir(path) if d.startswith("slow_")] if os.path.isdir(path) else []
        ckpts = 0          # trials whose 4th checkpoint the driver has recorded in result.json
        for d in started:
            try:
                ckpts += sum(1 for _ in open(os.path.join(path, d, "result.json"))) >= 4
            except OSError:
                pass
        if state.get(0) == "TERMINATED" and ckpts >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    else:
        proc.kill()
        raise AssertionError(f"never reached the kill point: {_state(path)}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = [json.loads(line) for line in open(log)]
    assert sorted(i for i, _ in before) in ([0, 1, 2], [0, 1, 2, 3])

    out = subprocess.run([sys.executable, script, "restore"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CAN True" in out.stdout
    result = json.loads(out.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert result == [[0, 5, True], [1, 80, True], [2, 80, True], [3, 80, True]]
    after = [json.loads(line) for line in open(log)][len(before):]
    assert 0 not in [i for i, _ in after], "a finished trial ran again"
    resumed = {i: start for i, start in after}
    assert resumed[1] >= 4 and resumed[2] >= 4       # from their checkpoints, not from scratch
    rows = [json.loads(l) for d in os.listdir(path) if d.startswith("slow_")
            for l in open(os.path.join(path, d, "result.json"))]
    per_trial = {}
    for r in rows:
        per_trial.setdefault(r["config"]["i"], []).append(r["training_iteration"])
    assert all(its == list(range(1, len(its) + 1)) for its in per_trial.values()), per_trial

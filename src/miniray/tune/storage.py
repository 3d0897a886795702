"""The experiment directory, laid out as Ray lays it out.

    storage_path/name/
        tuner.pkl                        the Tuner's param_space, configs (for Tuner.restore)
        experiment_state-<date>.json     the trials' statuses, and the pickled controller state
        pbt_global.txt                   PBT's exploit log (when PBT runs)
        <trainable>_<trial_id>_<index>_<params>_<date>/
            params.json, params.pkl      the trial's config
            result.json                  one JSON line per report
            progress.csv                 the same as a table
            checkpoint_000000/ ...       what the trial saved
            error.txt, error.pkl         the traceback of its last failure

All writes of state go to a temporary file first and are renamed into place, so a driver killed
at any moment leaves either the old state or the new one.
"""
from __future__ import annotations

import base64
import csv
import glob
import json
import math
import os
import pickle
import time

import cloudpickle

from miniray.tune.utils import flat

STATE_GLOB = "experiment_state-*.json"


def _safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        return value.item()        # numpy scalars
    except AttributeError:
        return repr(value)


def dumps(value) -> str:
    return json.dumps(value, default=_safe)


def atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_params(trial) -> None:
    os.makedirs(trial.local_path, exist_ok=True)
    atomic_write(os.path.join(trial.local_path, "params.json"), dumps(trial.config).encode())
    try:
        atomic_write(os.path.join(trial.local_path, "params.pkl"), cloudpickle.dumps(trial.config))
    except Exception:
        pass


def append_results(trial, results: list[dict]) -> None:
    """Append reports to result.json and progress.csv (the csv's columns are the first report's)."""
    if not results:
        return
    os.makedirs(trial.local_path, exist_ok=True)
    with open(os.path.join(trial.local_path, "result.json"), "a") as f:
        f.write("".join(dumps({**r, "config": trial.config}) + "\n" for r in results))
    append_csv(trial.local_path, [flat(r) for r in results])    # Ray's progress.csv is flat


def append_csv(trial_path: str, results: list[dict]) -> None:
    path = os.path.join(trial_path, "progress.csv")
    new = not os.path.exists(path)
    columns = list(results[0]) if new else _csv_header(path)
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        for r in results:
            writer.writerow([r.get(c, "") for c in columns])


def _csv_header(path: str) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def read_results(trial_path: str) -> list[dict]:
    """The complete lines of a trial's result.json (a killed driver may leave half a line)."""
    out = []
    try:
        with open(os.path.join(trial_path, "result.json")) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    break
                row.pop("config", None)
                out.append(row)
    except FileNotFoundError:
        pass
    return out


def write_error(trial, error: dict) -> None:
    os.makedirs(trial.local_path, exist_ok=True)
    text = f"Failure # {trial.num_failures} (occurred at {time.strftime('%Y-%m-%d_%H-%M-%S')})\n"
    with open(os.path.join(trial.local_path, "error.txt"), "a") as f:
        f.write(text + (error.get("traceback") or error.get("message", "")) + "\n")
    try:
        atomic_write(os.path.join(trial.local_path, "error.pkl"),
                     pickle.dumps(error.get("exception")))
    except Exception:
        pass


def save_tuner(path: str, tuner_state: dict) -> None:
    os.makedirs(path, exist_ok=True)
    atomic_write(os.path.join(path, "tuner.pkl"), cloudpickle.dumps(tuner_state))


def load_tuner(path: str) -> dict:
    with open(os.path.join(path, "tuner.pkl"), "rb") as f:
        return pickle.load(f)


def save_state(path: str, stamp: str, trials: list, state: dict) -> None:
    """The experiment state: readable trial summaries plus the pickled controller state."""
    summary = [{"trial_id": t.trial_id, "status": t.status, "config": t.config,
                "path": t.local_path, "num_failures": t.num_failures,
                "last_result": t.last_result} for t in trials]
    blob = base64.b64encode(cloudpickle.dumps(state)).decode("ascii")
    data = json.dumps({"trials": summary, "timestamp": time.time(), "state": blob},
                      default=_safe).encode()
    target = os.path.join(path, f"experiment_state-{stamp}.json")
    atomic_write(target, data)


def latest_state_file(path: str) -> str | None:
    files = sorted(glob.glob(os.path.join(path, STATE_GLOB)), key=os.path.getmtime)
    return files[-1] if files else None


def load_state(path: str) -> dict:
    file = latest_state_file(path)
    if file is None:
        raise FileNotFoundError(f"no {STATE_GLOB} in {path!r}: is it an experiment directory "
                                "(storage_path/name)?")
    with open(file) as f:
        data = json.load(f)
    return pickle.loads(base64.b64decode(data["state"]))

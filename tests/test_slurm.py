"""The Slurm launcher: the rendered script's text, option checks, and real jobs on a real Slurm.

Unit tests read the script rendered for 1, 2 and 4 nodes and for GPUs, run it through ``bash -n``,
and check that bad options fail with a message saying what to do.  The ``slurm`` tests submit real
jobs to the local Slurm of ``slurm_fixtures.slurm_cluster``.  Until the multi-node cluster CLI
exists they run the job script against ``fake_miniray``, which honours that CLI's contract and logs
what each node was started with; ``test_seed_examples_on_the_job_cluster`` uses the real miniray
and switches itself on when ``miniray start --help`` offers ``--head``.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from miniray.launchers import jobtools, slurm
from miniray.launchers.slurm import SlurmError, main, render_script, submit
from slurm_fixtures import (cluster_cli_available, fake_miniray, queue,  # noqa: F401 (fixtures)
                            slurm_cluster, wait_for)

JOB = "mr-test"   # job name of every job these tests submit


# ---------------------------------------------------------------------------------- script text
def sbatch_lines(script: str) -> list[str]:
    return [line.split(None, 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_script_header_for_n_nodes(nodes):
    script = render_script(["python", "job.py"], nodes=nodes, cpus_per_task=4)
    assert script.startswith("#!/usr/bin/env bash\n")
    assert sbatch_lines(script) == ["--job-name=miniray", f"--nodes={nodes}",
                                    "--ntasks-per-node=1", "--cpus-per-task=4",
                                    "--output=miniray-%j.out"]
    assert "COMMAND=(python job.py)" in script
    assert "GPUS_PER_NODE=0" in script
    assert not re.search(r"\{\{\s*\w+\s*\}\}", script), "a template field was left unfilled"


def test_script_gpus_and_every_option():
    script = render_script("python train.py --epochs 3", nodes=2, cpus_per_task=8, gpus_per_node=2,
                           mem="16G", time="1:30:00", partition="gpu", account="cs101",
                           job_name="train", output="logs/%x-%j.txt",
                           sbatch_options=["--qos=short"], env={"OMP_NUM_THREADS": "1"})
    assert sbatch_lines(script) == [
        "--job-name=train", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=8",
        "--gres=gpu:2", "--mem=16G", "--time=1:30:00", "--partition=gpu", "--account=cs101",
        "--output=logs/%x-%j.txt", "--qos=short"]
    assert "GPUS_PER_NODE=2" in script
    assert "export OMP_NUM_THREADS=1" in script
    assert "COMMAND=(bash -c 'python train.py --epochs 3')" in script
    # the step asks for the GPUs too, and each node tells miniray how many it has
    assert 'STEP_ARGS+=(--gres="gpu:$GPUS_PER_NODE")' in script
    assert 'args+=(--num-gpus "$MINIRAY_GPUS_PER_NODE")' in script


def test_script_without_gpus_has_no_gres():
    assert not any("gres" in line for line in sbatch_lines(render_script(["x"], nodes=2)))


@pytest.mark.parametrize("nodes,gpus", [(1, 0), (2, 0), (4, 0), (2, 1), (4, 4)])
def test_script_passes_bash_n(tmp_path, nodes, gpus):
    path = tmp_path / "job.sh"
    path.write_text(render_script(["python", "-c", "print('hi')"], nodes=nodes, gpus_per_node=gpus))
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_command_arguments_survive_quoting(tmp_path):
    argv = ["python", "-c", "print('a b')", "it's", "$HOME", "`id`", "semi;colon", ""]
    script = render_script(argv)
    line = next(l for l in script.splitlines() if l.startswith("COMMAND=("))
    out = subprocess.run(["bash", "-c", line + '\nprintf "%s\\0" "${COMMAND[@]}"'],
                         capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == argv


def test_script_refuses_to_run_outside_slurm(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", "-c", render_script(["true"])], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "not inside a Slurm job" in proc.stderr


def test_cli_script_prints_the_rendered_script(capsys):
    assert main(["script", "--nodes", "2", "-c", "2", "--", "python", "job.py"]) == 0
    assert capsys.readouterr().out == render_script(["python", "job.py"], nodes=2, cpus_per_task=2)


# ------------------------------------------------------------------------------ option checking
@pytest.mark.parametrize("argv,message", [
    (["script", "--nodes", "0", "--", "x"], "--nodes '0': expected a whole number >= 1"),
    (["script", "--nodes", "two", "--", "x"], "--nodes 'two': expected a whole number"),
    (["script", "--nodes", "2", "-c", "1.5", "--", "x"], "--cpus-per-task '1.5'"),
    (["script", "--nodes", "2", "--gpus-per-node", "-1", "--", "x"], "--gpus-per-node '-1'"),
    (["script", "--nodes", "2", "--mem", "lots", "--", "x"], "--mem 'lots': expected a size"),
    (["script", "--nodes", "2", "--time", "1h", "--", "x"], "--time '1h': expected a time"),
    (["script", "--nodes", "2", "--partition", "a b", "--", "x"], "--partition 'a b'"),
    (["script", "--nodes", "2", "--job-name", "x\n#SBATCH --x", "--", "x"], "--job-name"),
    (["script", "--nodes", "2", "--"], "missing COMMAND: put the command to run after `--`"),
    (["submit", "--nodes", "2", "python", "job.py"], "the command to run goes after `--`"),
])
def test_bad_options_say_what_to_do(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_missing_nodes_is_a_usage_error(capsys):
    assert main(["script", "--", "python", "job.py"]) == 2
    assert "--nodes" in capsys.readouterr().err


def test_api_rejects_empty_command():
    with pytest.raises(SlurmError, match="missing COMMAND"):
        render_script([])


def test_up_outside_an_allocation(monkeypatch, capsys):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert main(["up"]) == 2
    assert "salloc" in capsys.readouterr().err


# ------------------------------------------------------------------------- node-side helpers
def test_token_file_is_private_and_fresh(tmp_path):
    token = jobtools.make_token(str(tmp_path / "token"))
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert jobtools.make_token(str(tmp_path / "other")) != token
    with pytest.raises(FileExistsError):   # never reuse (or follow) a file that is already there
        jobtools.make_token(str(tmp_path / "token"))


def test_addresses(monkeypatch):
    assert jobtools.node_ip("127.0.0.1") == "127.0.0.1"
    port = jobtools.free_port("127.0.0.1")
    assert 1024 < port < 65536
    addrs = {"h1": "127.0.1.1", "h2": "192.0.2.77"}   # Debian's /etc/hosts trap on the head
    monkeypatch.setattr(jobtools, "slurm_node_addr", lambda host: addrs[host])
    monkeypatch.setattr(jobtools, "resolve", lambda name: name)
    monkeypatch.setattr(jobtools, "route_source", lambda dest: f"route-to-{dest}")
    assert jobtools.head_ip(["h1", "h2"]) == "route-to-192.0.2.77"
    assert jobtools.head_ip(["h1"]) == "127.0.1.1"
    addrs["h1"] = "10.0.0.1"
    assert jobtools.head_ip(["h1", "h2"]) == "10.0.0.1"


def test_kill_tree_stops_children_too():
    code = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; " \
           "time.sleep(60)']); print('up', flush=True); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline() == "up\n"
    tree = [parent.pid] + [c.pid for c in psutil.Process(parent.pid).children(recursive=True)]
    assert len(tree) == 2
    assert jobtools.kill_tree(parent.pid, grace=5) == 0
    parent.wait(timeout=10)
    assert wait_for(lambda: not any(alive(p) for p in tree), timeout=10)


def test_script_with_engine_ray_starts_ray_with_the_jobs_token():
    text = render_script(["python", "job.py"], nodes=2, engine="ray")
    assert "ENGINE=ray " in text
    assert '"$MINIRAY_RAY_CMD" start --head --port "$MINIRAY_PORT" --temp-dir' in text
    assert "RAY_AUTH_TOKEN=$MINIRAY_TOKEN" in text


    assert "ENGINE=miniray " in render_script(["python", "job.py"], nodes=1)


def test_unknown_engine_is_refused():
    with pytest.raises(SlurmError, match="--engine 'spark': expected one of miniray, ray"):
        render_script(["python", "job.py"], nodes=1, engine="spark")


def test_output_pattern():
    out = slurm._expand_output("logs/%x-%j-%5j-%%.out", "42", "demo", "/w")
    assert out == "/w/logs/demo-42-00042-%.out"


# ------------------------------------------------------------------------- real Slurm, real jobs
@pytest.fixture
def job_env(monkeypatch, tmp_path, fake_miniray):
    """sbatch passes our environment to the job: point it at the stand-in miniray."""
    log = tmp_path / "nodes.jsonl"
    monkeypatch.setenv("MINIRAY_CMD", str(fake_miniray))
    monkeypatch.setenv("FAKE_MINIRAY_LOG", str(log))
    monkeypatch.setenv("MINIRAY_WAIT_NODES", "0")
    monkeypatch.setenv("MINIRAY_START_TIMEOUT", "30")
    return log


def started(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def job_processes(job_id: str) -> list[psutil.Process]:
    """Every live process that belongs to Slurm job ``job_id`` (by its environment)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("SLURM_JOB_ID") == job_id:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


# The driver: show it runs on the head with the cluster's address and token, and can reach it.
DRIVER = textwrap.dedent("""\
    import os, socket, time
    host, port = os.environ["MINIRAY_ADDRESS"].rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()
    print("driver", os.environ["SLURMD_NODENAME"], os.environ["MINIRAY_ADDRESS"],
          os.environ["MINIRAY_TOKEN"], time.time(), flush=True)
    time.sleep(float(os.environ.get("DRIVER_SLEEP", "0")))
    print("driver-done", time.time(), flush=True)
    raise SystemExit(int(os.environ.get("DRIVER_EXIT", "0")))
""")


def driver_line(output: str) -> list[str]:
    return next(l for l in output.splitlines() if l.startswith("driver ")).split()


@pytest.mark.slurm
def test_submit_wait_prints_and_exits_0(slurm_cluster, job_env, tmp_path, capsys):
    out_pattern = str(tmp_path / "out-%j.txt")
    rc = main(["submit", "--nodes", "1", "--cpus-per-task", "1", "--job-name", JOB, "--output",
               out_pattern, "--time", "5", "--wait", "--", sys.executable, "-c", DRIVER])
    said = capsys.readouterr().out
    job_id = re.search(r"submitted job (\d+)", said).group(1)
    output_path = out_pattern.replace("%j", job_id)
    assert rc == 0, Path(output_path).read_text()
    assert f"output: {output_path}" in said
    assert f"job {job_id} ended: COMPLETED, exit code 0; output: {output_path}" in said
    text = Path(output_path).read_text()
    _, node, address, token, *_ = driver_line(text)
    [head] = started(job_env)
    assert (node, head["role"], head["node"], head["job"]) == ("n1", "head", "n1", job_id)
    assert address == f"{head['ip']}:{head['port']}" and token == head["token"]
    user = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    assert head["session"] == f"/tmp/miniray-{user}-{job_id}/n1"
    assert head["session_mode"] == "0o700" and head["session_owner"] == os.getuid()
    assert head["cpus"] == 1 and "driver-done" in text
    assert not Path(head["session"]).exists(), "the job directory outlives the job"


@pytest.mark.slurm
def test_failing_command_fails_the_job_with_its_code(slurm_cluster, job_env, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("DRIVER_EXIT", "3")
    job = submit([sys.executable, "-c", DRIVER], nodes=1, cpus_per_task=1, job_name=JOB,
                 output=str(tmp_path / "%j.out"), workdir=str(tmp_path))
    assert job.output_path == str(tmp_path / f"{job.job_id}.out")
    assert job.wait(timeout=60) == 3
    assert job.state() == "FAILED"
    assert "command exited with 3" in Path(job.output_path).read_text()


@pytest.mark.slurm
def test_two_nodes_join_the_head(slurm_cluster, job_env, tmp_path):
    job = submit([sys.executable, "-c", DRIVER], nodes=2, cpus_per_task=2, job_name=JOB,
                 output=str(tmp_path / "%j.out"), env={"DRIVER_SLEEP": "1"})
    assert job.wait(timeout=60) == 0, Path(job.output_path).read_text()
    head, node = sorted(started(job_env), key=lambda r: r["role"])
    assert (head["role"], head["node"], node["role"], node["node"]) == ("head", "n1", "node", "n2")
    assert node["address"] == f"{head['ip']}:{head['port']}"
    assert node["token"] == head["token"] and head["session"] != node["session"]
    assert head["cpus"] == node["cpus"] == 2
    assert driver_line(Path(job.output_path).read_text())[1] == "n1"


@pytest.mark.slurm
def test_two_jobs_on_one_node_do_not_collide(slurm_cluster, job_env, tmp_path):
    jobs = [submit([sys.executable, "-c", DRIVER], nodes=1, cpus_per_task=1, job_name=JOB,
                   output=str(tmp_path / "%j.out"), sbatch_options=["--nodelist=n1"],
                   env={"DRIVER_SLEEP": "2"}) for _ in range(2)]
    assert [j.wait(timeout=90) for j in jobs] == [0, 0]
    a, b = started(job_env)
    assert a["node"] == b["node"] == "n1" and a["job"] != b["job"]
    assert a["port"] != b["port"] and a["session"] != b["session"] and a["token"] != b["token"]
    (_, _, _, _, a_start), (_, _, _, _, b_start) = (driver_line(Path(j.output_path).read_text())
                                                    for j in jobs)
    a_end, b_end = (float(re.search(r"driver-done (\S+)", Path(j.output_path).read_text())[1])
                    for j in jobs)
    assert float(a_start) < b_end and float(b_start) < a_end, "the two jobs did not overlap"


@pytest.mark.slurm
def test_cancel_leaves_no_processes(slurm_cluster, job_env, tmp_path):
    job = submit([sys.executable, "-c", DRIVER], nodes=2, cpus_per_task=1, job_name=JOB,
                 output=str(tmp_path / "%j.out"), env={"DRIVER_SLEEP": "300"})
    assert wait_for(lambda: len(started(job_env)) == 2 and "driver " in
                    Path(job.output_path).read_text(errors="replace"), timeout=60), job.state()
    pids = [pid for r in started(job_env) for pid in (r["pid"], r["worker_pid"])]
    assert job_processes(job.job_id)
    job.cancel()
    assert job.wait(timeout=60) == 143 and job.state() == "CANCELLED"
    assert wait_for(lambda: not job_processes(job.job_id), timeout=30), \
        [(p.pid, p.cmdline()[:3]) for p in job_processes(job.job_id)]
    assert not any(alive(p) for p in pids)
    assert not Path(started(job_env)[0]["session"]).parent.exists()


@pytest.mark.slurm
def test_up_inside_salloc(slurm_cluster, job_env, tmp_path):
    code = ("import sys; from miniray.launchers.slurm import main; sys.exit(main(['up', '--', "
            "'bash', '-c', 'echo address=$MINIRAY_ADDRESS; exit 5']))")
    proc = subprocess.run(["salloc", "--nodes=1", "--cpus-per-task=1", f"--job-name={JOB}",
                           sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 5, proc.stderr
    [head] = started(job_env)
    assert f"address={head['ip']}:{head['port']}" in proc.stdout


from helpers import SEED_JOB  # noqa: E402  (the seed's examples as a job script)

@pytest.mark.slurm
@pytest.mark.skipif(not cluster_cli_available(),
                    reason="needs the multi-node cluster CLI (`miniray start --head`), issue 5")
def test_seed_examples_on_the_job_cluster(slurm_cluster, tmp_path, capsys):
    (tmp_path / "job.py").write_text(SEED_JOB)
    rc = main(["submit", "--nodes", "1", "--cpus-per-task", "2", "--job-name", JOB, "--output",
               str(tmp_path / "out-%j.txt"), "--wait", "--", sys.executable, str(tmp_path / "job.py")])
    job_id = re.search(r"submitted job (\d+)", capsys.readouterr().out).group(1)
    text = (tmp_path / f"out-{job_id}.txt").read_text()
    assert rc == 0, text
    assert "[0, 1, 4, 9]\n[2, 3, 4, 5]\n" in text
    assert wait_for(lambda: not job_processes(job_id), timeout=30)


@pytest.mark.slurm
@pytest.mark.skipif(not cluster_cli_available(),
                    reason="needs the multi-node cluster CLI (`miniray start --head`), issue 5")
def test_two_node_job_runs_tasks_on_both_nodes(slurm_cluster, tmp_path, capsys):
    """A real 2-node job: the head on the first node, `miniray start --address` on the second (both
    slurmd run on this machine), and the driver sees two nodes and uses both with SPREAD."""
    (tmp_path / "job.py").write_text(textwrap.dedent("""\
        import time
        import miniray as ray
        ray.init()                                   # joins the job's cluster (MINIRAY_ADDRESS)
        @ray.remote(scheduling_strategy="SPREAD")
        def where(i):
            time.sleep(0.3)
            return ray.get_runtime_context().get_node_id()
        print("nodes:", sum(n["Alive"] for n in ray.nodes()))
        print("used:", len(set(ray.get([where.remote(i) for i in range(8)]))))
    """))
    rc = main(["submit", "--nodes", "2", "--cpus-per-task", "1", "--job-name", JOB, "--output",
               str(tmp_path / "out-%j.txt"), "--wait", "--", sys.executable, str(tmp_path / "job.py")])
    job_id = re.search(r"submitted job (\d+)", capsys.readouterr().out).group(1)
    text = (tmp_path / f"out-{job_id}.txt").read_text()
    assert rc == 0, text
    assert "nodes: 2" in text and "used: 2" in text, text
    assert wait_for(lambda: not job_processes(job_id), timeout=30)


@pytest.mark.slurm
@pytest.mark.skipif(not cluster_cli_available(),
                    reason="needs the multi-node cluster CLI (`miniray start --head`), issue 5")
def test_two_real_jobs_on_one_node_do_not_collide(slurm_cluster, tmp_path):
    """Two seed-example jobs at once, both forced onto n1: separate ports, tokens and sessions."""
    (tmp_path / "job.py").write_text(SEED_JOB)
    jobs = [submit([sys.executable, str(tmp_path / "job.py")], nodes=1, cpus_per_task=1,
                   sbatch_options=["--nodelist=n1"],
                   job_name=JOB, output=str(tmp_path / f"out{i}-%j.txt")) for i in range(2)]
    codes = [job.wait(timeout=120) for job in jobs]
    texts = [Path(job.output_path).read_text() for job in jobs]
    assert codes == [0, 0], texts
    assert all("[0, 1, 4, 9]\n[2, 3, 4, 5]\n" in t for t in texts), texts

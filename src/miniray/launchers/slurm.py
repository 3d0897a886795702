"""Run a miniray cluster inside a Slurm job: render the sbatch script, submit it, follow the job.

Who does what::

    miniray slurm script ... -- CMD      render_script() -> text on stdout
    miniray slurm submit ... -- CMD      render_script() -> sbatch (stdin) -> SlurmJob -> wait()
    miniray slurm up [-- CMD]            render_script() -> bash, inside the current allocation

Everything that happens *inside* the job lives in the template ``templates/slurm.sh.tmpl`` (plain,
commented bash a teacher can copy) and the node-side helpers in ``jobtools.py``.  This module only
validates options, fills the template, and shells out to Slurm's commands in one place,
``_slurm()``.  It owns no state beyond a ``SlurmJob``'s id and output path; the job's state is
always asked of Slurm (``scontrol``, then ``sacct`` once the controller has forgotten the job).
"""
from __future__ import annotations

import argparse
import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).with_name("templates") / "slurm.sh.tmpl"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}
_TIME = re.compile(r"^(\d+|\d+:\d\d|\d+:\d\d:\d\d|\d+-\d+|\d+-\d+:\d\d|\d+-\d+:\d\d:\d\d"
                   r"|INFINITE|UNLIMITED)$")
_MEM = re.compile(r"^\d+[KMGT]?$")
ENGINES = ("miniray", "ray")
_WORD = re.compile(r"^[A-Za-z0-9_.,:+=@%/-]+$")


class SlurmError(RuntimeError):
    """A Slurm command failed, or an option cannot go into an sbatch script."""


# --------------------------------------------------------------------------------------- rendering
def _check(name: str, value, pattern: re.Pattern, what: str) -> str:
    text = str(value)
    if not pattern.match(text):
        raise SlurmError(f"--{name} {value!r}: expected {what}")
    return text


def _positive(name: str, value, minimum: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or str(value).strip() != str(number):
        raise SlurmError(f"--{name} {value!r}: expected a whole number >= {minimum}")
    return number


def render(template: str, values: dict[str, str]) -> str:
    """Replace each ``{{name}}`` in ``template``; an unknown or missing name is an error."""
    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template needs a value for {{{{{key}}}}}")
        return values[key]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, template)


def render_script(command: list[str] | str, *, nodes: int = 1, cpus_per_task: int | None = None,
                  gpus_per_node: int = 0, mem: str | None = None, time: str | None = None,
                  partition: str | None = None, account: str | None = None,
                  job_name: str = "miniray", output: str | None = "miniray-%j.out",
                  env: dict[str, str] | None = None, sbatch_options: list[str] = (),
                  python_bin: str | None = None, engine: str = "miniray") -> str:
    """The sbatch script that starts a miniray cluster on ``nodes`` nodes and runs ``command``.

    ``command`` is an argument list (or one shell string, run with ``bash -c``).  ``env`` adds
    ``export`` lines.  ``sbatch_options`` adds raw ``#SBATCH`` lines, e.g. ``["--qos=short"]``.
    ``python_bin`` is the directory put first on PATH in the job (default: this interpreter's).
    ``engine="ray"`` starts a real Ray cluster (``ray start``) instead of miniray's.
    Raises ``SlurmError`` for options Slurm would reject or that would break the script.
    """
    if isinstance(command, str):
        command = ["bash", "-c", command]
    command = list(command)
    if engine not in ENGINES:
        raise SlurmError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if not command:
        raise SlurmError("missing COMMAND: put the command to run after `--`, for example "
                         "`miniray slurm submit --nodes 2 -- python job.py`")
    header = [f"--job-name={_check('job-name', job_name, _WORD, 'a name without spaces')}",
              f"--nodes={_positive('nodes', nodes)}",
              "--ntasks-per-node=1"]
    if cpus_per_task is not None:
        header.append(f"--cpus-per-task={_positive('cpus-per-task', cpus_per_task)}")
    gpus = _positive("gpus-per-node", gpus_per_node or 0, minimum=0)
    if gpus:
        header.append(f"--gres=gpu:{gpus}")
    if mem is not None:
        header.append(f"--mem={_check('mem', mem, _MEM, 'a size such as 4000, 8G or 512M')}")
    if time is not None:
        header.append(f"--time={_check('time', time, _TIME, 'a time such as 30, 1:00:00 or 1-0')}")
    if partition is not None:
        header.append(f"--partition={_check('partition', partition, _WORD, 'a partition name')}")
    if account is not None:
        header.append(f"--account={_check('account', account, _WORD, 'an account name')}")
    if output is not None:
        if not output or "\n" in output or output != output.strip():
            raise SlurmError(f"--output {output!r}: expected a file name such as miniray-%j.out")
        header.append(f"--output={output}")
    for opt in sbatch_options:
        if "\n" in opt or not opt.startswith("-"):
            raise SlurmError(f"--sbatch {opt!r}: expected one sbatch option such as --qos=short")
        header.append(opt)
    bindir = python_bin or os.path.dirname(sys.executable)
    environment = [f"export PATH={shlex.quote(bindir)}:\"$PATH\""]
    for key, value in (env or {}).items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise SlurmError(f"environment variable name {key!r} is not valid")
        environment.append(f"export {key}={shlex.quote(str(value))}")
    return render(TEMPLATE.read_text(), {
        "sbatch_header": "\n".join(f"#SBATCH {line}" for line in header),
        "environment": "\n".join(environment),
        "command": shlex.join(command),
        "gpus_per_node": str(gpus),
        "engine": engine,
    })


# ------------------------------------------------------------------------------ talking to Slurm
def _slurm(args: list[str], input: str | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one Slurm command: the only place this module shells out."""
    if shutil.which(args[0]) is None:
        raise SlurmError(f"`{args[0]}` not found: run this on a Slurm login node (or install "
                         "slurm-wlm), or print the script with `miniray slurm script`")
    proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SlurmError(f"{shlex.join(args[:2])} failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _expand_output(pattern: str, job_id: str, job_name: str, workdir: str) -> str:
    """sbatch's file-name pattern for this job (%j, %A, %x, %u, %%), as an absolute path."""
    subs = {"j": job_id, "A": job_id, "x": job_name, "u": getpass.getuser(), "%": "%"}
    path = re.sub(r"%(\d*)([jAxu%])", lambda m: subs[m.group(2)].zfill(int(m.group(1) or 0)),
                  pattern)
    return os.path.join(workdir, path)


def _job_fields(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict, or {} once the controller has forgotten the job."""
    proc = _slurm(["scontrol", "show", "job", "-o", job_id], check=False)
    if proc.returncode != 0:
        return {}
    return dict(f.split("=", 1) for f in proc.stdout.split() if "=" in f)


@dataclass
class SlurmJob:
    """A submitted job.  State and exit code are always read from Slurm, never cached."""

    job_id: str
    output_path: str

    def _state_and_code(self) -> tuple[str, int | None]:
        fields = _job_fields(self.job_id)
        if not fields:   # gone from the controller: ask accounting, if the site has it
            proc = _slurm(["sacct", "-n", "-X", "-P", "-j", self.job_id, "-o", "State,ExitCode"],
                          check=False)
            line = proc.stdout.strip().splitlines()[:1] if proc.returncode == 0 else []
            if not line:
                return "UNKNOWN", None
            state, code = line[0].split("|")
            fields = {"JobState": state.split()[0], "ExitCode": code}
        code, sig = (fields.get("ExitCode", "0:0").split(":") + ["0"])[:2]
        exit_code = int(code) if int(code) or not int(sig) else 128 + int(sig)
        return fields.get("JobState", "UNKNOWN"), exit_code

    def state(self) -> str:
        """Slurm's state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ... or UNKNOWN."""
        return self._state_and_code()[0]

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> int:
        """Block until the job has ended; return its exit code (the command's, 128+N if signal N).

        Raises ``TimeoutError`` if it is still queued or running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.1
        while True:
            state, code = self._state_and_code()
            if state in FINISHED:
                if state == "CANCELLED" and not code:
                    return 128 + 15
                return code or 0
            if state == "UNKNOWN":
                raise SlurmError(f"job {self.job_id} is unknown to Slurm (finished long ago?)")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.job_id} still {state} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, poll)

    def cancel(self) -> None:
        """``scancel`` the job: Slurm signals every process of it, and the script's trap cleans up."""
        _slurm(["scancel", self.job_id])


def submit(command: list[str] | str, *, workdir: str | None = None, **options) -> SlurmJob:
    """Render the script (same options as ``render_script``), hand it to ``sbatch``, return the job."""
    script = render_script(command, **options)
    workdir = os.path.abspath(workdir or os.getcwd())
    proc = _slurm(["sbatch", "--parsable", f"--chdir={workdir}"], input=script)
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch gave no job id: {proc.stdout.strip()!r}")
    output = _job_fields(job_id).get("StdOut") or _expand_output(
        options.get("output") or "slurm-%j.out", job_id, options.get("job_name", "miniray"), workdir)
    return SlurmJob(job_id, output)


def up(command: list[str] | None = None, **options) -> int:
    """Start a cluster in the current allocation (salloc, srun --pty), run ``command`` there.

    Without a command it opens your shell with MINIRAY_ADDRESS and MINIRAY_TOKEN set; leaving the
    shell stops the cluster.  Returns the command's exit code.
    """
    if not os.environ.get("SLURM_JOB_ID"):
        raise SlurmError("`miniray slurm up` runs inside an allocation: first `salloc --nodes 2 "
                         "--cpus-per-task 2`, or use `miniray slurm submit` for a batch job")
    if not command:
        command = [os.environ.get("SHELL") or "bash", "-i"]
        print(f"miniray: starting a cluster in allocation {os.environ['SLURM_JOB_ID']}; in the "
              "shell that opens, miniray.init() joins it; `exit` stops it", file=sys.stderr)
    script = render_script(command, nodes=int(os.environ.get("SLURM_JOB_NUM_NODES", "1")),
                           output=None, **options)
    env = dict(os.environ)
    if options.get("cpus_per_task") is not None:
        env["MINIRAY_NUM_CPUS"] = str(options["cpus_per_task"])
    return subprocess.run(["bash", "-c", script, "miniray-slurm-up"], env=env).returncode


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miniray slurm", description="Run a miniray cluster inside a Slurm job.",
        epilog="example: miniray slurm submit --nodes 2 --cpus-per-task 4 --wait -- python job.py")
    sub = parser.add_subparsers(dest="action", required=True, metavar="{script,submit,up}")
    specs = {"script": "print the sbatch script", "submit": "submit the job with sbatch",
             "up": "start the cluster inside the current allocation (salloc, srun --pty)"}
    for action, help_text in specs.items():
        p = sub.add_parser(action, help=help_text, description=help_text + "; COMMAND goes "
                           "after `--`" + ("" if action != "up" else " (default: your shell)"))
        if action != "up":
            p.add_argument("--nodes", "-N", required=True, metavar="N")
        p.add_argument("--cpus-per-task", "-c", metavar="C", help="CPUs per node")
        p.add_argument("--gpus-per-node", metavar="G", default=0, help="GPUs per node (--gres=gpu:G)")
        p.add_argument("--engine", choices=ENGINES, default="miniray",
                       help="the cluster to start: miniray (default) or a real Ray (`ray start`)")
        if action != "up":
            p.add_argument("--mem", metavar="M", help="memory per node, e.g. 8G")
            p.add_argument("--time", "-t", metavar="T", help="time limit, e.g. 1:00:00")
            p.add_argument("--partition", "-p", metavar="P")
            p.add_argument("--account", "-A", metavar="A")
            p.add_argument("--job-name", "-J", metavar="NAME", default="miniray")
            p.add_argument("--output", "-o", metavar="PATH", default="miniray-%j.out",
                           help="sbatch output file (default: miniray-%%j.out)")
            p.add_argument("--sbatch", action="append", default=[], metavar="OPT",
                           help="extra sbatch option, e.g. --sbatch=--qos=short (repeatable)")
        if action == "submit":
            p.add_argument("--wait", action="store_true", help="wait for the job, exit with its code")
    return parser


def main(argv: list[str]) -> int:
    """``miniray slurm ...``: returns the process exit code."""
    argv = list(argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    opts = argv[:argv.index("--")] if "--" in argv else argv
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(opts)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)} (the command to run goes "
                         f"after `--`, as in `miniray slurm submit --nodes 2 -- python job.py`)")
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return int(e.code or 0)
    options = {"cpus_per_task": args.cpus_per_task, "gpus_per_node": args.gpus_per_node,
               "engine": args.engine}
    if args.action != "up":
        options.update(nodes=args.nodes, mem=args.mem, time=args.time, partition=args.partition,
                       account=args.account, job_name=args.job_name, output=args.output,
                       sbatch_options=args.sbatch)
    try:
        if args.action == "up":
            return up(command or None, **options)
        if not command:
            raise SlurmError(f"missing COMMAND: put the command to run after `--`, for example "
                             f"`miniray slurm {args.action} --nodes {args.nodes} -- python job.py`")
        if args.action == "script":
            print(render_script(command, **options), end="")
            return 0
        job = submit(command, **options)
        print(f"submitted job {job.job_id}; output: {job.output_path}")
        if not args.wait:
            print(f"follow it with `squeue -j {job.job_id}`, stop it with `scancel {job.job_id}`")
            return 0
        try:
            code = job.wait()
        except KeyboardInterrupt:
            print(f"\nstopped waiting; job {job.job_id} goes on (`scancel {job.job_id}` stops it)")
            return 130
        print(f"job {job.job_id} ended: {job.state()}, exit code {code}; output: {job.output_path}")
        return code
    except SlurmError as e:
        print(f"miniray slurm: error: {e}", file=sys.stderr)
        return 2

"""A fork server for many short ``python -m gspo ...`` runs (each one a real, separate process).

Importing torch + transformers costs 5-25 s of CPU on the shared 2-core CI machine, far more than the
few seconds a tiny training run takes, and the crash/resume tests need ~25 runs. So a *zygote*
process imports the heavy modules once (and runs no torch op, so no thread pool exists yet), then
``fork()``s one child per run. The child sets its environment and ``sys.argv``, redirects its
stdout/stderr to files and executes ``runpy.run_module("gspo", run_name="__main__")`` -- exactly what
``python -m gspo`` does -- and dies the way that command would (exit code, or killed by a signal).

Protocol on the zygote's stdin/stdout, one JSON object per line:
    -> {"argv": [...], "env": {...}, "stdout": PATH, "stderr": PATH, "timeout": SECONDS}
    <- {"pid": PID, "returncode": RC, "timed_out": BOOL}      (RC < 0: killed by signal -RC)

Run as ``python -m tests.reliability.forkserver`` (repo root and src on PYTHONPATH). The client side
is :class:`ForkServer`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``gspo`` process: repo root + src importable, quiet, deterministic threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSPO_CRASH")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONHASHSEED="0",
    )
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------- zygote side
def _child(job: dict) -> None:  # pragma: no cover - runs in the forked child
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        for key in [k for k in os.environ if k.startswith("GSPO_CRASH")]:
            del os.environ[key]
        os.environ.update(job.get("env", {}))
        sys.argv = ["gspo", *job["argv"]]
        import runpy

        try:
            runpy.run_module("gspo", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - report like the interpreter would
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), True
        time.sleep(0.02)


def serve() -> None:  # pragma: no cover - runs in the zygote
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers.models.llama import modeling_llama  # noqa: F401

    import gspo.cli.main
    import gspo.cli.train  # noqa: F401
    import gspo.models.loading  # noqa: F401
    import gspo.tasks  # noqa: F401
    import gspo.trainer.build  # noqa: F401
    import gspo.trainer.trainer  # noqa: F401

    gspo.cli.main.build_parser()  # imports every subcommand module
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        job = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
        rc, timed_out = _wait(pid, float(job.get("timeout", 120)))
        out.write(json.dumps({"pid": pid, "returncode": rc, "timed_out": timed_out}) + "\n")
        out.flush()


# ------------------------------------------------------------------------------- client side
@dataclass
class Run:
    argv: list[str]
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str


class ForkServer:
    """Client of the zygote: ``run(argv, env)`` runs ``python -m gspo *argv`` in a fresh forked process."""

    def __init__(self, workdir: Path, start_timeout: float = 240):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._n = 0
        self._log = open(self.workdir / "zygote.stderr", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "tests.reliability.forkserver"],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        hello = self._read(start_timeout)
        assert "ready" in hello, hello

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            log = (self.workdir / "zygote.stderr").read_text()[-3000:]
            raise RuntimeError(f"fork server gave no answer within {timeout:.0f}s; its stderr:\n{log}")
        return json.loads(line)

    def run(self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        self._n += 1
        out, err = self.workdir / f"run{self._n}.stdout", self.workdir / f"run{self._n}.stderr"
        job = {
            "argv": [str(a) for a in argv],
            "env": env or {},
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout + 30)
        return Run(job["argv"], reply["returncode"], reply["timed_out"], out.read_text(), err.read_text())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


if __name__ == "__main__":
    serve()

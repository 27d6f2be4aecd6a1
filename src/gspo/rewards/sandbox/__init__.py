"""Code-execution sandbox for the code rewards (HumanEval / MBPP style unit tests). Linux only.

``run_tests(solution, tests)`` executes untrusted model-written Python in a fresh child process and
says whether the tests passed; ``run_tests_many`` does the same for many jobs in parallel.

Mechanisms (details, guarantees and non-guarantees: docs/security.md):

* one process per execution, started through a small launcher script (``launcher.py``) with
  ``subprocess`` (no ``preexec_fn``: safe from a multi-threaded trainer, no signal handlers);
* wall-clock deadline (enforced by the launcher, with a parent-side backstop), RLIMIT_CPU,
  RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps;
* a memory cgroup per slot bounds everything the run makes resident (``memcg``);
* as root: the code runs under a distinct unprivileged uid/gid per concurrent slot (61000 + slot,
  slots are also locked across processes with ``flock``), and every process of that uid is killed
  and its keyrings cleared afterwards; not root: a user namespace with all capabilities dropped;
* new network namespace, PID namespace (everything dies with the run), IPC namespace (System V
  limits of zero) and mount namespace: a read-only view of the system directories, the interpreter
  and the allowed packages only (``view``), private size-limited /tmp that holds the work dir;
* a seccomp filter (libseccomp): no socket family but AF_UNIX, no new namespaces or mounts, no
  keyrings, SysV IPC, ptrace, bpf, perf, userfaultfd, io_uring (``launcher_seccomp``);
* scrubbed environment, private work dir as cwd (deleted afterwards), whole process group killed;
* stdout/stderr read incrementally: ``max_output_bytes`` kept per stream, the rest discarded, and
  after ``DRAIN_BUDGET_BYTES`` the pipe is closed (the writer gets EPIPE);
* the tests reach the harness only after the solution ran; trace/profile hooks are refused (audit
  hook); verdict through a dedicated pipe with a per-run nonce that the harness reads only after
  the tests finished; an exit without a valid verdict never counts as passed.

Limits: not a VM (kernel exploits, side channels and resource contention are out of scope); code
that deliberately introspects the harness process (ctypes, frames of the running tests) can forge
a verdict or read the test's constants (it runs in that process); when namespaces, cgroups or
libseccomp are unavailable the guarantees degrade (logged once; see ``isolation_report``).
"""
from __future__ import annotations

import grp
import logging
import marshal
import os
import pwd
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gspo.rewards.sandbox import memcg
from gspo.rewards.sandbox.parent_io import (Sink, cleanup_world_writable, close_all, communicate, kill_group,
                                            parse_ctl, pipe_pair, remove_tree)
from gspo.rewards.sandbox.view import DEFAULT_PACKAGES, site_paths, view

__all__ = ["SandboxLimits", "ExecResult", "run_tests", "run_tests_many", "isolation_report", "STATUSES",
           "DEFAULT_PACKAGES"]

STATUSES = ("passed", "failed", "timeout", "memory", "error", "tampered")
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")
UID_BASE = 61000
UID_SLOTS = 184  # uids 61000..61183: below systemd's dynamic-user range (61184..65519)
BACKSTOP_GRACE_S = 10.0  # the launcher enforces timeout_s; the parent kills it this much later
DRAIN_BUDGET_BYTES = 64 << 20  # output read (and discarded) per stream before the pipe is closed
VERDICT_TAG = "GSPO-VERDICT"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               # one thread per BLAS/OpenMP pool: threads count against max_processes
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_log = logging.getLogger(__name__)
_FORCE_USER_MODE = False  # tests: exercise the non-root (user namespace) path while root
_USE_NAMESPACES = True  # tests: exercise the fallbacks for kernels that refuse namespaces
_USE_CGROUP = True  # tests: exercise the fallback for hosts without a memory cgroup
_USE_SECCOMP = True  # tests: exercise the fallback for hosts without libseccomp
_site_paths = site_paths  # (the name the tests use)


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: float = 10.0  # CPU time, per process
    # Memory of the whole run (memory cgroup): every process, tmpfs/shm/memfd files, kernel memory.
    # Also each process's address space (RLIMIT_AS), which turns most overruns into MemoryError.
    memory_mb: int = 1024
    max_output_bytes: int = 65536  # stdout/stderr captured, rest discarded (never buffered unbounded)
    max_processes: int = 8  # processes/threads the program may create
    max_file_mb: int = 16  # largest file it may write
    # Installed packages the code may import besides the standard library; nothing else of any
    # site-packages directory is visible (task data shipped in packages included).
    packages: tuple[str, ...] = DEFAULT_PACKAGES


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES; "error" = sandbox/harness problem
    passed: bool  # True only if every test ran and none failed
    duration_s: float
    returncode: int | None
    stdout: str  # truncated to max_output_bytes
    stderr: str  # truncated
    memory_peak_mb: float | None = None  # peak of the run's memory cgroup (None without one)


class _SlotPool:
    """Hands out sandbox uids (one per concurrent run), exclusive across threads and processes
    (an ``flock`` per uid in a root-only directory; the lock dies with its holder)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_use: set[int] = set()
        self._unusable: set[int] = set()  # uid or gid has a passwd/group entry: a real account
        self._lock_dir: str | None = None
        self.reaped: set[int] = set()  # uids already cleared of leftovers by this process
        self._fds: dict[int, int] = {}  # uid -> lock fd, for the slots this process holds

    def _dir(self) -> str:
        if self._lock_dir is None:
            base = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
            path = os.path.join(base, "gspo-sandbox-slots")
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise RuntimeError(f"unsafe sandbox lock directory {path}")
            self._lock_dir = path
        return self._lock_dir

    def _usable(self, uid: int) -> bool:
        if uid in self._unusable:
            return False
        for lookup in (pwd.getpwuid, grp.getgrgid):
            try:
                lookup(uid)
            except KeyError:
                continue
            self._unusable.add(uid)
            return False
        return True

    def acquire(self) -> tuple[int, int]:
        """-> (uid, lock fd). Blocks while every uid is busy."""
        import fcntl

        with self._cond:
            while True:
                for uid in range(UID_BASE, UID_BASE + UID_SLOTS):
                    if uid in self._in_use or not self._usable(uid):
                        continue
                    path = os.path.join(self._dir(), f"uid-{uid}.lock")
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    self._in_use.add(uid)
                    self._fds[uid] = fd
                    return uid, fd
                self._cond.wait(0.05)

    def release(self, uid: int, fd: int) -> None:
        with self._cond:
            os.close(fd)
            self._in_use.discard(uid)
            self._fds.pop(uid, None)
            self._cond.notify()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's slots (our copies of its lock fds, its lock)."""
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.__init__()


_SLOTS = _SlotPool()
os.register_at_fork(after_in_child=_SLOTS.forget_after_fork)  # e.g. fork-based DataLoader workers
_warned: set[str] = set()


def _classify(records: dict[str, dict], verdict: bytes, nonce: str, limits: SandboxLimits,
              backstop: bool, oom_kills: int = 0) -> tuple[str, int | None, str]:
    """-> (status, returncode, note for stderr)."""
    ready, done = records.get("ready"), records.get("exit")
    if backstop:
        return ("timeout" if ready else "error"), None, "sandbox launcher unresponsive, killed"
    if ready is None or done is None:
        setup = records.get("setup_error", {})
        where = "".join(f"\n  {line}" for line in setup.get("where", "").splitlines())
        return "error", None, f"sandbox setup failed: {setup.get('error', 'launcher died')}{where}"
    rc = os.waitstatus_to_exitcode(done["wait_status"])
    if verdict:
        prefix = f"{VERDICT_TAG} {nonce} {ready['pid']} ".encode()
        status = verdict[len(prefix):-1].decode("ascii", "replace")
        if (verdict.startswith(prefix) and verdict.endswith(b"\n") and verdict.count(b"\n") == 1
                and status in ("passed", "failed", "memory")):
            return status, rc, ""
        return "tampered", rc, "verdict channel written by someone other than the harness"
    if oom_kills:
        return "memory", rc, f"memory limit of {limits.memory_mb} MiB reached (OOM killer of the run's cgroup)"
    if done["timed_out"]:
        return "timeout", rc, f"wall-clock limit of {limits.timeout_s}s exceeded"
    # RLIMIT_CPU kills with SIGKILL (soft == hard). rusage under-reports CPU time by up to a few
    # scheduler ticks, so accept half the limit as evidence (nothing else sends SIGKILL here).
    if rc < 0 and -rc in (signal.SIGKILL, signal.SIGXCPU) and done["cpu_s"] >= 0.5 * limits.cpu_s:
        return "timeout", rc, f"CPU limit of {limits.cpu_s}s exceeded"
    if rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        return "failed", rc, f"killed by {name}"
    return "tampered", rc, "process exited before the harness reported a verdict"


def _reap(uid: int) -> None:
    """Kill every process of ``uid`` from a fresh helper process (forking the trainer is unsafe)."""
    subprocess.run([sys.executable, "-I", "-S", LAUNCHER, "--reap", str(uid)], env=SANDBOX_ENV,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd="/", check=False)


def _warn_degraded(feats: dict) -> None:
    missing = [k for k in ("userns", "netns", "pidns", "mountns", "private_tmp", "ro_root", "proc",
                           "sysv_zero", "memcg", "seccomp") if k in feats and not feats[k]]
    if feats.get("mountns") and "private_tmp" not in feats:
        missing.append("private_tmp")
    if feats.get("mode") == "user":
        missing.append("uid-drop(not root)")
    key = ",".join(missing)
    if missing and key not in _warned:
        _warned.add(key)
        why = "; ".join(f"{k}: {feats[k]}" for k in ("mount_error", "memcg_error", "seccomp_error") if k in feats)
        _log.warning("gspo sandbox runs with weaker isolation (missing: %s; %s). See docs/security.md.",
                     key, why or "no error")


def _feed_tests(fd: int, data: bytes) -> None:
    """Write the test program into its pipe, which the harness drains only after the solution ran:
    what does not fit the pipe's buffer is written by a helper thread (EPIPE: the run is over)."""
    try:
        os.set_blocking(fd, False)
        done = os.write(fd, data) if data else 0
    except BlockingIOError:
        done = 0
    except OSError:
        os.close(fd)
        return
    if done == len(data):
        os.close(fd)
        return

    def rest() -> None:
        try:
            os.set_blocking(fd, True)
            view_ = memoryview(data)[done:]
            while view_:
                view_ = view_[os.write(fd, view_):]
        except OSError:
            pass
        finally:
            os.close(fd)

    threading.Thread(target=rest, name="gspo-sandbox-tests", daemon=True).start()


def _execute(solution: str, tests: str, limits: SandboxLimits, uid: int | None, workdir: str,
             cgroup: memcg.RunCgroup | None) -> tuple[ExecResult, dict]:
    from _blake2 import blake2b

    start = time.monotonic()
    nonce = secrets.token_hex(16)
    cfg_r, cfg_w = pipe_pair()
    out_r, out_w = pipe_pair()
    err_r, err_w = pipe_pair()
    ctl_r, ctl_w = pipe_pair()
    ver_r, ver_w = pipe_pair()
    non_r, non_w = pipe_pair()
    tst_r, tst_w = pipe_pair()
    os.write(non_w, nonce.encode())
    os.close(non_w)
    test_bytes = tests.encode("utf-8", "surrogatepass")
    shown = view(tuple(limits.packages))
    cfg = {
        "solution": solution, "tests_size": len(test_bytes),
        "tests_digest": blake2b(test_bytes, digest_size=32).hexdigest(),
        "uid": uid, "gid": uid, "workdir": workdir, "namespaces": _USE_NAMESPACES,
        "seccomp": _USE_SECCOMP,
        "timeout_s": limits.timeout_s, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb,
        "max_processes": limits.max_processes, "max_file_mb": limits.max_file_mb,
        "tmpfs_mb": max(64, 4 * limits.max_file_mb), "site_paths": site_paths(),
        "keep_paths": shown["keep_paths"] + [workdir], "hide_dirs": shown["hide_dirs"],
        "site_filters": shown["site_filters"],
    }
    env = dict(SANDBOX_ENV, HOME=workdir, TMPDIR=workdir)
    child_fds = [cfg_r, out_w, err_w, ctl_w, ver_w, non_r, tst_r]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", LAUNCHER, *map(str, (ctl_w, ver_w, non_r, tst_r))],
            stdin=cfg_r, stdout=out_w, stderr=err_w, pass_fds=(ctl_w, ver_w, non_r, tst_r), env=env,
            cwd="/", close_fds=True, start_new_session=True)
    except BaseException:
        close_all(child_fds + [cfg_w, out_r, err_r, ctl_r, ver_r, tst_w])
        raise
    close_all(child_fds)
    # Into the memory cgroup while the interpreter starts (a cgroup move waits for an RCU grace
    # period, ~15 ms here), before the config goes out: the launcher reads it before it forks.
    cfg["cgroup"] = cgroup is not None and cgroup.add(proc.pid)
    _feed_tests(tst_w, test_bytes)
    sinks = {out_r: Sink(limits.max_output_bytes, DRAIN_BUDGET_BYTES),
             err_r: Sink(limits.max_output_bytes, DRAIN_BUDGET_BYTES),
             ctl_r: Sink(1 << 16, 1 << 16), ver_r: Sink(4096, 4096)}
    try:
        try:
            with os.fdopen(cfg_w, "wb", closefd=True) as f:
                f.write(marshal.dumps(cfg))
        except BrokenPipeError:
            pass
        backstop = communicate(proc, sinks, time.monotonic() + limits.timeout_s + BACKSTOP_GRACE_S)
    finally:
        close_all([fd for fd, s in sinks.items() if not getattr(s, "closed", False)])
        kill_group(proc.pid)
        proc.wait()
    records = parse_ctl(bytes(sinks[ctl_r].data))
    feats = records.get("ready", {}).get("features", {})
    if uid is not None and (backstop or not feats.get("pidns") or not records.get("exit", {}).get("reaped")):
        _reap(uid)  # the launcher could not (or may not have) killed every process of the uid
    if uid is not None and not feats.get("private_tmp"):
        cleanup_world_writable(uid, workdir)
    usage = cgroup.finish() if cgroup is not None else {"peak_mb": None, "oom_kills": 0}
    status, rc, note = _classify(records, bytes(sinks[ver_r].data), nonce, limits, backstop, usage["oom_kills"])
    stderr = bytes(sinks[err_r].data).decode("utf-8", "replace")
    if note:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + f"[gspo-sandbox] {status}: {note}\n"
    result = ExecResult(status=status, passed=status == "passed", duration_s=time.monotonic() - start,
                        returncode=rc, stdout=bytes(sinks[out_r].data).decode("utf-8", "replace"),
                        stderr=stderr, memory_peak_mb=usage["peak_mb"])
    return result, feats


def _run(solution_code: str, test_code: str, limits: SandboxLimits) -> tuple[ExecResult, dict]:
    start = time.monotonic()
    root = os.geteuid() == 0 and not _FORCE_USER_MODE
    uid = fd = workdir = cgroup = None
    try:
        if root:
            uid, fd = _SLOTS.acquire()
            if uid not in _SLOTS.reaped:  # leftovers of a crashed earlier owner of this uid
                _reap(uid)
                _SLOTS.reaped.add(uid)
        if _USE_CGROUP:
            cgroup = memcg.prepare(str(uid) if uid is not None else None, limits.memory_mb)
        workdir = tempfile.mkdtemp(prefix="gspo-sbx-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        result, feats = _execute(solution_code, test_code, limits, uid, workdir, cgroup)
        if feats:
            feats.setdefault("memcg", False)
        _warn_degraded(feats)
        return result, feats
    except Exception as exc:  # noqa: BLE001 - the trainer must get a result, not a crash
        _log.exception("gspo sandbox failure")
        note = f"[gspo-sandbox] error: {exc!r}\n"
        return ExecResult("error", False, time.monotonic() - start, None, "", note), {}
    finally:
        if cgroup is not None:
            cgroup.close()
        if workdir is not None:
            remove_tree(workdir)
        if uid is not None:
            _SLOTS.release(uid, fd)


def run_tests(solution_code: str, test_code: str, *, limits: SandboxLimits = SandboxLimits()) -> ExecResult:
    """Run solution_code, then test_code in the same namespace, in an isolated child process.
    passed iff test_code ran to completion with no exception.

    The namespace's ``__name__`` is ``"__sandbox__"`` (``if __name__ == "__main__":`` blocks do not
    run); any exception, ``SystemExit`` included, fails. Thread-safe; never raises for bad code.
    """
    return _run(solution_code, test_code, limits)[0]


def run_tests_many(jobs: list[tuple[str, str]], *, limits: SandboxLimits = SandboxLimits(),
                   max_workers: int | None = None) -> list[ExecResult]:
    """Run many in parallel (default: os.cpu_count() workers); results in input order."""
    if not jobs:
        return []
    workers = max(1, min(len(jobs), max_workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gspo-sandbox") as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], limits=limits), jobs))


def isolation_report() -> dict:
    """Run a trivial program and return which isolation features the sandbox got on this machine
    (e.g. ``{"mode": "root", "netns": True, "pidns": True, "mountns": True, ...}``)."""
    result, feats = _run("", "", SandboxLimits(timeout_s=30.0))
    return dict(feats, status=result.status)

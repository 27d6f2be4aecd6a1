"""Code-execution sandbox for the code rewards (HumanEval / MBPP style unit tests). Linux only.

``run_tests(solution, tests)`` executes untrusted model-written Python in a fresh child process and
says whether the tests passed; ``run_tests_many`` does the same for many jobs in parallel.

Mechanisms (details, guarantees and non-guarantees: docs/security.md):

* one process per execution, started through a small launcher script (``sandbox_launcher.py``)
  with ``subprocess`` (no ``preexec_fn``: safe from a multi-threaded trainer, no signal handlers);
* wall-clock deadline (enforced by the launcher, with a parent-side backstop), RLIMIT_CPU,
  RLIMIT_AS (memory), RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps;
* as root: the code runs under a distinct unprivileged uid/gid per concurrent slot (61000 + slot,
  slots are also locked across processes with ``flock``), and every process of that uid is killed
  afterwards; not root: a user namespace with all capabilities dropped instead;
* new network namespace (no network at all), PID namespace (everything dies with the run), IPC and
  mount namespaces (read-only file system, private size-limited /tmp that holds the work dir);
* scrubbed environment, private work dir as cwd (deleted afterwards), whole process group killed;
* stdout/stderr read incrementally: ``max_output_bytes`` kept per stream, the rest discarded, and
  after ``DRAIN_BUDGET_BYTES`` the pipe is closed (the writer gets EPIPE);
* verdict through a dedicated pipe with a per-run nonce that the harness reads only after the
  tests finished; an exit without a valid verdict never counts as passed.

Limits: not a VM (kernel exploits, side channels and resource contention are out of scope); code
that deliberately introspects the harness process can forge a verdict (it runs in that process);
when namespaces are unavailable the guarantees degrade (logged once; see ``isolation_report``).
"""
from __future__ import annotations

import ast
import grp
import logging
import marshal
import os
import pwd
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["SandboxLimits", "ExecResult", "run_tests", "run_tests_many", "isolation_report", "STATUSES"]

STATUSES = ("passed", "failed", "timeout", "memory", "error", "tampered")
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_launcher.py")
UID_BASE = 61000
UID_SLOTS = 184  # uids 61000..61183: below systemd's dynamic-user range (61184..65519)
BACKSTOP_GRACE_S = 10.0  # the launcher enforces timeout_s; the parent kills it this much later
EXIT_GRACE_S = 0.5  # after the launcher exited, how long leftover pipe writers may linger
DRAIN_BUDGET_BYTES = 64 << 20  # output read (and discarded) per stream before the pipe is closed
VERDICT_TAG = "GSPO-VERDICT"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

_log = logging.getLogger(__name__)
_FORCE_USER_MODE = False  # tests: exercise the non-root (user namespace) path while root
_USE_NAMESPACES = True  # tests: exercise the fallbacks for kernels that refuse namespaces


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: float = 10.0  # CPU time
    memory_mb: int = 1024  # address space
    max_output_bytes: int = 65536  # stdout/stderr captured, rest discarded (never buffered unbounded)
    max_processes: int = 32  # processes/threads the program may create
    max_file_mb: int = 16  # largest file it may write


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES; "error" = sandbox/harness problem
    passed: bool  # True only if every test ran and none failed
    duration_s: float
    returncode: int | None
    stdout: str  # truncated to max_output_bytes
    stderr: str  # truncated


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


class _Sink:
    """Keeps the first ``keep`` bytes of a stream; reports when ``budget`` bytes were exceeded."""

    def __init__(self, keep: int, budget: int) -> None:
        self.keep, self.budget, self.total, self.data = keep, budget, 0, bytearray()

    def feed(self, chunk: bytes) -> bool:
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        return self.total <= self.budget


def _keep_paths() -> list[str]:
    """Directories the sandboxed interpreter must be able to read."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(_site_paths())
    return sorted(p for p in paths if p and os.path.isdir(p))


def _site_paths() -> list[str]:
    import site

    try:
        return [p for p in site.getsitepackages() if os.path.isdir(p)]
    except AttributeError:  # pragma: no cover - exotic site modules
        return []


def _home_dir() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return os.environ.get("HOME", "")


def _pipe_pair() -> tuple[int, int]:
    return os.pipe()  # both ends close-on-exec: concurrent Popen calls cannot inherit them


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _launcher_exited(pid: int) -> bool:
    """Non-reaping check (the zombie keeps the pid and process group id from being reused)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _communicate(proc: subprocess.Popen, sinks: dict[int, _Sink], deadline: float) -> bool:
    """Read every pipe in ``sinks`` until they close; kill the process group once the launcher
    exits. Returns True if the backstop ``deadline`` was hit (launcher killed)."""
    sel = selectors.DefaultSelector()
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pidfd = None
    exited_at = None
    backstop = False
    try:
        while len(sel.get_map()) > (1 if pidfd is not None and exited_at is None else 0):
            now = time.monotonic()
            if exited_at is None and (pidfd is None and _launcher_exited(proc.pid)):
                exited_at = now
                _kill_group(proc.pid)
            limit = deadline if exited_at is None else exited_at + EXIT_GRACE_S
            if now >= limit:
                backstop = exited_at is None
                break
            wait = min(limit - now, 0.05 if pidfd is None else limit - now)
            for key, _ in sel.select(wait):
                if key.fd == pidfd:
                    sel.unregister(pidfd)
                    exited_at = time.monotonic()
                    _kill_group(proc.pid)
                    continue
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk or not sinks[key.fd].feed(chunk):
                    sel.unregister(key.fd)
                    if chunk:  # over budget: close our end, the writer gets EPIPE from now on
                        os.close(key.fd)
                        sinks[key.fd].closed = True  # type: ignore[attr-defined]
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    if backstop or exited_at is None:
        _kill_group(proc.pid)
    return backstop


def _parse_ctl(raw: bytes) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            rec = ast.literal_eval(line)
            records.setdefault(rec["kind"], rec)
        except (ValueError, KeyError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return records


def _classify(records: dict[str, dict], verdict: bytes, nonce: str, limits: SandboxLimits,
              backstop: bool) -> tuple[str, int | None, str]:
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


def _cleanup_world_writable(uid: int, workdir: str) -> None:
    """Without a private /tmp (no mount namespace), remove what the sandbox uid left there
    (top-level entries owned by ``uid``; ``workdir`` is removed separately)."""
    for directory in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.path == workdir or entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _reap(uid: int) -> None:
    """Kill every process of ``uid`` from a fresh helper process (forking the trainer is unsafe)."""
    subprocess.run([sys.executable, "-I", "-S", LAUNCHER, "--reap", str(uid)], env=SANDBOX_ENV,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd="/", check=False)


def _remove_tree(root: str) -> None:
    """Delete the work dir. Non-root: the code may have made its dirs unwritable, so fix modes,
    but only of directories strictly inside ``root`` (never its parent, never through a link)."""

    def _retry(func, path, exc_info):
        if isinstance(exc_info[1], FileNotFoundError):
            return
        try:
            for d in (os.path.dirname(path), path):
                if (d == root or d.startswith(root + os.sep)) and stat.S_ISDIR(os.lstat(d).st_mode):
                    os.chmod(d, 0o700)
            func(path)
        except OSError:
            pass

    if os.path.lexists(root):
        shutil.rmtree(root, onerror=_retry)


def _warn_degraded(feats: dict) -> None:
    missing = [k for k in ("userns", "netns", "pidns", "mountns", "private_tmp", "ro_root", "proc")
               if k in feats and not feats[k]]
    if feats.get("mountns") and "private_tmp" not in feats:
        missing.append("private_tmp")
    if feats.get("mode") == "user":
        missing.append("uid-drop(not root)")
    key = ",".join(missing)
    if missing and key not in _warned:
        _warned.add(key)
        _log.warning("gspo sandbox runs with weaker isolation (missing: %s; %s). See docs/security.md.",
                     key, feats.get("mount_error", "no error"))


def _execute(solution: str, tests: str, limits: SandboxLimits, uid: int | None,
             workdir: str) -> tuple[ExecResult, dict]:
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    cfg_r, cfg_w = _pipe_pair()
    out_r, out_w = _pipe_pair()
    err_r, err_w = _pipe_pair()
    ctl_r, ctl_w = _pipe_pair()
    ver_r, ver_w = _pipe_pair()
    non_r, non_w = _pipe_pair()
    os.write(non_w, nonce.encode())
    os.close(non_w)
    cfg = {
        "solution": solution, "tests": tests, "uid": uid, "gid": uid, "workdir": workdir,
        "namespaces": _USE_NAMESPACES,
        "timeout_s": limits.timeout_s, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb,
        "max_processes": limits.max_processes, "max_file_mb": limits.max_file_mb,
        "tmpfs_mb": max(64, 4 * limits.max_file_mb), "site_paths": _site_paths(),
        "keep_paths": _keep_paths() + [workdir], "hide_dirs": [] if uid is not None else [_home_dir()],
    }
    env = dict(SANDBOX_ENV, HOME=workdir, TMPDIR=workdir)
    child_fds = [cfg_r, out_w, err_w, ctl_w, ver_w, non_r]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", LAUNCHER, str(ctl_w), str(ver_w), str(non_r)],
            stdin=cfg_r, stdout=out_w, stderr=err_w, pass_fds=(ctl_w, ver_w, non_r), env=env,
            cwd="/", close_fds=True, start_new_session=True)
    except BaseException:
        _close_all(child_fds + [cfg_w, out_r, err_r, ctl_r, ver_r])
        raise
    _close_all(child_fds)
    sinks = {out_r: _Sink(limits.max_output_bytes, DRAIN_BUDGET_BYTES),
             err_r: _Sink(limits.max_output_bytes, DRAIN_BUDGET_BYTES),
             ctl_r: _Sink(1 << 16, 1 << 16), ver_r: _Sink(4096, 4096)}
    try:
        try:
            with os.fdopen(cfg_w, "wb", closefd=True) as f:
                f.write(marshal.dumps(cfg))
        except BrokenPipeError:
            pass
        backstop = _communicate(proc, sinks, time.monotonic() + limits.timeout_s + BACKSTOP_GRACE_S)
    finally:
        _close_all([fd for fd, s in sinks.items() if not getattr(s, "closed", False)])
        _kill_group(proc.pid)
        proc.wait()
    records = _parse_ctl(bytes(sinks[ctl_r].data))
    feats = records.get("ready", {}).get("features", {})
    if uid is not None and (backstop or not feats.get("pidns") or not records.get("exit", {}).get("reaped")):
        _reap(uid)  # the launcher could not (or may not have) killed every process of the uid
    if uid is not None and not feats.get("private_tmp"):
        _cleanup_world_writable(uid, workdir)
    status, rc, note = _classify(records, bytes(sinks[ver_r].data), nonce, limits, backstop)
    stderr = bytes(sinks[err_r].data).decode("utf-8", "replace")
    if note:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + f"[gspo-sandbox] {status}: {note}\n"
    result = ExecResult(status=status, passed=status == "passed", duration_s=time.monotonic() - start,
                        returncode=rc, stdout=bytes(sinks[out_r].data).decode("utf-8", "replace"),
                        stderr=stderr)
    return result, feats


def _run(solution_code: str, test_code: str, limits: SandboxLimits) -> tuple[ExecResult, dict]:
    start = time.monotonic()
    root = os.geteuid() == 0 and not _FORCE_USER_MODE
    uid = fd = workdir = None
    try:
        if root:
            uid, fd = _SLOTS.acquire()
            if uid not in _SLOTS.reaped:  # leftovers of a crashed earlier owner of this uid
                _reap(uid)
                _SLOTS.reaped.add(uid)
        workdir = tempfile.mkdtemp(prefix="gspo-sbx-")
        if uid is not None:
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        result, feats = _execute(solution_code, test_code, limits, uid, workdir)
        _warn_degraded(feats)
        return result, feats
    except Exception as exc:  # noqa: BLE001 - the trainer must get a result, not a crash
        _log.exception("gspo sandbox failure")
        note = f"[gspo-sandbox] error: {exc!r}\n"
        return ExecResult("error", False, time.monotonic() - start, None, "", note), {}
    finally:
        if workdir is not None:
            _remove_tree(workdir)
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

"""Child-side launcher of :mod:`gspo.rewards.sandbox` (Linux only).

The parent runs this file as a script: ``python -I -S launcher.py CTL VERDICT NONCE TESTS`` (and
moves it into the run's memory cgroup before sending the config). It imports nothing from gspo (only its sibling modules
``launcher_mounts``, ``launcher_seccomp`` and ``launcher_harness``, loaded by path before the
file system is narrowed), so it starts fast and works from any installed location.

What it does, in order (each step degrades gracefully when the kernel refuses it; the steps that
worked are reported to the parent in the ``ready`` record on the CTL pipe, one ``repr``'d dict a
line; CTL is closed before candidate code runs, so only trusted code writes it):

1. reads a ``marshal``'d config from stdin (solution, size and digest of the tests, limits, sandbox
   uid/gid or ``None``, work dir, file-system view), then points stdin at /dev/null;
2. user mode only: enters a new user namespace (mapping its own ids) so that the next steps are
   allowed; then marks itself non-dumpable;
3. new network (no interfaces but a down loopback), IPC (System V limits set to zero), mount and PID
   namespaces; in the mount namespace, the narrowed read-only view of ``launcher_mounts``;
4. forks the harness child (pid 1 of the new PID namespace: when it exits, the kernel kills every
   process left in the namespace). The child mounts a fresh /proc, makes itself the OOM killer's
   first choice, applies rlimits, drops privileges (root: setresuid to the slot uid, no groups; user mode: drops
   all capabilities), joins a fresh session keyring, sets no_new_privs and a parent-death SIGKILL,
   loads the seccomp filter and runs the candidate code (``launcher_harness.run_harness``);
5. waits for the child with a wall-clock deadline (pidfd), SIGKILLs it on timeout and, in root
   mode, kills every process of the slot uid and clears its keyrings; reports ``exit`` on CTL and
   exits. The parent then kills the launcher's process group.

``python -I -S launcher.py --reap UID`` only kills every process of UID (parent backstop).
"""
from __future__ import annotations

import ctypes
import marshal
import os
import resource
import select
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launcher_harness  # noqa: E402 - siblings, found through the line above
import launcher_mounts  # noqa: E402
import launcher_seccomp  # noqa: E402

del sys.path[0]

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR = 250, 1, 7
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5
CTL_FD, VERDICT_FD, NONCE_FD, TESTS_FD = 3, 4, 5, 6  # fixed numbers inside the sandbox
SETUP_FAILED_EXIT = 125
SIGKILL = 9  # numeric: the signal module pulls in enum, which costs milliseconds per run

_libc = ctypes.CDLL(None, use_errno=True)
_mount = launcher_mounts._mount
mask_dirs = launcher_mounts.mask_dirs


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _write_ctl(record: dict) -> None:
    try:
        os.write(CTL_FD, (repr(record) + "\n").encode())
    except OSError:
        pass


def reap_uid(uid: int) -> bool:
    """Kill every process whose real uid is ``uid`` and clear its user keyrings (needs root).

    A forked helper switches to ``uid`` and calls ``kill(-1, SIGKILL)``, which reaches exactly the
    processes that uid may signal (its own, in every PID namespace: setsid/double-fork daemons
    included). The kernel walks the task list under a lock that fork needs, and a process with a
    pending SIGKILL cannot complete a fork, so one pass leaves no survivor; we do three anyway.
    (kill(-1) reports success whenever any other process exists, so its result says nothing.)
    """
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        try:
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            for ring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):  # nothing for the next run
                _libc.syscall(SYS_KEYCTL, KEYCTL_CLEAR, ctypes.c_long(ring))
            for _ in range(3):
                os.kill(-1, SIGKILL)
        except BaseException:  # noqa: BLE001 - ESRCH: no other process at all
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
    return True


def _map_own_ids(uid: int, gid: int) -> None:
    """In a fresh user namespace: map our own uid/gid (only), so files keep their real owner."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _drop_capabilities() -> None:
    """Drop every capability (user-namespace mode, where we are 'root' of our own namespace)."""
    for cap in range(64):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = ctypes.create_string_buffer(24)  # two zeroed __user_cap_data_struct
    _check(_libc.capset(ctypes.c_char_p(header), data), "capset")


def _count_user_tasks(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return count


def _apply_limits(cfg: dict, feats: dict) -> None:
    mb = 1024 * 1024
    cpu = max(1, int(cfg["cpu_s"] + 0.999))
    limits = [
        (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
        (resource.RLIMIT_CPU, cpu),  # soft == hard: the kernel sends SIGKILL at the limit
        (resource.RLIMIT_FSIZE, cfg["max_file_mb"] * mb),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_MSGQUEUE, 0),
    ]
    nproc = cfg["max_processes"]
    if cfg["uid"] is None and not feats.get("userns"):
        # Same uid as the trainer and no namespace of our own: RLIMIT_NPROC counts all of the
        # user's tasks, so allow what exists now plus the budget (approximate, racy).
        nproc += _count_user_tasks(os.getuid())
    limits.append((resource.RLIMIT_NPROC, nproc))
    for which, value in limits:
        resource.setrlimit(which, (value, value))


def _preimport_common_modules() -> None:
    """Root mode without a mount namespace: the stdlib may be unreadable after the uid drop."""
    for name in ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
                 "typing", "random", "statistics", "fractions", "decimal", "operator", "copy",
                 "hashlib", "datetime", "array", "dataclasses", "enum", "textwrap", "unicodedata",
                 "io", "cmath", "numbers", "struct", "queue", "threading", "time", "traceback", "socket"):
        try:
            __import__(name)
        except ImportError:
            pass


def _set_oom_score_adj(value: int) -> bool:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
        return True
    except OSError:
        return False


def _child_setup(cfg: dict, feats: dict) -> None:
    """Runs in the harness child before any candidate code; raises on failure."""
    if feats.get("pidns") and feats.get("mountns"):
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            feats["proc"] = True
        except OSError:
            feats["proc"] = False
    if cfg["cgroup"]:  # the parent moved the launcher into the run's memory cgroup before we forked
        feats["memcg"] = True
        _set_oom_score_adj(1000)  # the OOM killer of the cgroup picks candidate processes first
    _apply_limits(cfg, feats)
    uid = cfg["uid"]
    if uid is not None:
        if "masked" not in feats:  # the interpreter's files may be unreachable after the switch
            _preimport_common_modules()
        gid = cfg["gid"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getuid() != uid or os.geteuid() != uid:
            raise OSError("privilege drop failed")
    elif feats.get("userns"):
        _drop_capabilities()
    # A fresh anonymous session keyring (the trainer's is not reachable; the user keyrings of a slot
    # uid are cleared after every run, and the filter refuses keyctl anyway).
    feats["keyring"] = _libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None) >= 0
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    _prctl(PR_SET_PDEATHSIG, SIGKILL)  # after the uid change, which clears it
    os.chdir(cfg["workdir"])
    os.umask(0o077)
    if cfg["seccomp"]:
        try:
            unknown = launcher_seccomp.load(deny_memfd=not cfg["cgroup"])
            feats["seccomp"] = True
            if unknown:
                feats["seccomp_unknown"] = unknown
        except OSError as exc:
            feats["seccomp"] = False
            feats["seccomp_error"] = str(exc)


def _wait_child(pid: int, timeout_s: float, start: float) -> tuple[int, object, bool]:
    """Wait for ``pid`` until ``start + timeout_s``; SIGKILL it on timeout. -> (status, rusage, timed_out)."""
    timed_out = False
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        remaining = start + timeout_s - time.monotonic()
        if pidfd is not None:
            ready = remaining > 0 and select.select([pidfd], [], [], remaining)[0]
            done = bool(ready)
        else:
            done = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            if not done and remaining > 0:
                time.sleep(min(0.01, remaining))
                continue
        if not done and remaining <= 0:
            timed_out = True
            os.kill(pid, SIGKILL)
        if done or timed_out:
            break
    if pidfd is not None:
        os.close(pidfd)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage, timed_out


def _move_fds(fds: list[int]) -> None:
    """Renumber the inherited pipes to CTL_FD .. TESTS_FD; close everything else."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in zip((CTL_FD, VERDICT_FD, NONCE_FD, TESTS_FD), high):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    os.closerange(TESTS_FD + 1, 64 + len(fds))


def _read_config() -> dict:
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return marshal.loads(b"".join(chunks))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--reap"]:
        reap_uid(int(argv[1]))
        return
    _move_fds([int(a) for a in argv[:4]])
    cfg = _read_config()
    if cfg["cgroup"] and cfg["uid"] is not None:  # root: the launcher itself is never the OOM victim
        _set_oom_score_adj(-1000)
    sys.path.extend(cfg["site_paths"])
    uid = cfg["uid"]
    feats: dict = {"mode": "root" if uid is not None else "user"}
    if uid is None:
        real_ids = os.getuid(), os.getgid()  # inside the new namespace they read as 65534
        feats["userns"] = cfg["namespaces"] and _libc.unshare(CLONE_NEWUSER) == 0
        if feats["userns"]:
            try:
                _map_own_ids(*real_ids)
            except OSError as exc:  # we still hold every capability inside the namespace
                feats["id_map_error"] = str(exc)
    _prctl(PR_SET_DUMPABLE, 0)  # only now: a non-dumpable process cannot write its own uid_map
    can_unshare = cfg["namespaces"] and (uid is not None or feats["userns"])
    for key, flag in (("netns", CLONE_NEWNET), ("ipcns", CLONE_NEWIPC), ("mountns", CLONE_NEWNS)):
        feats[key] = can_unshare and _libc.unshare(flag) == 0
    if feats["ipcns"]:  # before the mounts: /proc/sys becomes read-only with everything else
        feats["sysv_zero"] = launcher_mounts.zero_sysv_limits()
    if feats["mountns"]:
        try:
            launcher_mounts.setup_mounts(cfg, feats)
        except OSError as exc:
            feats["mount_error"] = str(exc)
    try:  # to come back to our own PID namespace for forking after the sandbox's one is gone
        own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        own_pidns = -1
    feats["pidns"] = can_unshare and own_pidns >= 0 and _libc.unshare(CLONE_NEWPID) == 0
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            if own_pidns >= 0:
                os.close(own_pidns)
            _child_setup(cfg, feats)
            _write_ctl({"kind": "ready", "features": feats, "pid": os.getpid()})
            os.close(CTL_FD)
        except BaseException as exc:  # noqa: BLE001
            try:
                import traceback

                where = traceback.format_exc(limit=-2)
            except ImportError:  # after the uid switch the stdlib may be unreachable
                where = ""
            _write_ctl({"kind": "setup_error", "error": repr(exc), "where": where})
            os._exit(SETUP_FAILED_EXIT)
        launcher_harness.run_harness(cfg["solution"], cfg["tests_size"], cfg["tests_digest"])
    for fd in (VERDICT_FD, NONCE_FD, TESTS_FD):
        os.close(fd)
    status, rusage, timed_out = _wait_child(pid, cfg["timeout_s"], start)
    wall = time.monotonic() - start
    reaped = None
    if uid is not None:
        if feats["pidns"]:  # fork into our own PID namespace again (the sandbox's one is dead)
            _libc.setns(own_pidns, CLONE_NEWPID)
        reaped = reap_uid(uid)
    _write_ctl({"kind": "exit", "wait_status": status, "timed_out": timed_out, "wall_s": wall,
                "cpu_s": rusage.ru_utime + rusage.ru_stime, "reaped": reaped})


if __name__ == "__main__":
    main(sys.argv[1:])

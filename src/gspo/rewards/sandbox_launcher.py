"""Child-side launcher and test harness of :mod:`gspo.rewards.sandbox` (Linux only).

The parent runs this file as a script: ``python -I -S sandbox_launcher.py CTL VERDICT NONCE``.
It imports nothing from gspo, so it starts fast and works from any installed location.

What it does, in order (each step degrades gracefully when the kernel refuses it; the steps that
worked are reported to the parent in the ``ready`` record on the CTL pipe, one ``repr``'d dict a
line; CTL is closed before candidate code runs, so only trusted code writes it):

1. reads a ``marshal``'d config from stdin (code, limits, sandbox uid/gid or ``None``, work dir),
   then points stdin at /dev/null;
2. user mode only: enters a new user namespace (mapping its own ids) so that the next steps are
   allowed; then marks itself non-dumpable;
3. new network (no interfaces but a down loopback: no network at all), IPC, mount and PID
   namespaces. In the mount namespace: directories that hide the interpreter from an unprivileged
   uid (e.g. /root, mode 0700) are covered by an empty tmpfs that re-exposes only the interpreter
   and site-packages (/run, and in user mode $HOME, are hidden the same way); every mount is made
   read-only; a size-limited private tmpfs covers /tmp, /var/tmp, /dev/shm and holds the work dir;
4. forks the harness child (pid 1 of the new PID namespace: when it exits, the kernel kills every
   process left in the namespace). The child mounts a fresh /proc, applies rlimits (address space,
   CPU, processes, file size, open files, no core), drops privileges (root: setresuid to the slot
   uid, no groups; user mode: drops all capabilities), sets no_new_privs, a parent-death SIGKILL,
   and runs the candidate code (see ``run_harness``);
5. waits for the child with a wall-clock deadline (pidfd), SIGKILLs it on timeout and, in root
   mode, kills every process of the slot uid; reports ``exit`` on CTL and exits. The parent then
   kills the launcher's process group (the child and its descendants stay in it unless they call
   setsid, which only matters where no PID namespace could be created).

The verdict protocol is described in ``run_harness`` and docs/security.md. It defends against
accidental and shallow tampering (early exits, exceptions, fake stdout markers, monkey-patching
builtins/harness names, forked copies of the harness), not against code that deliberately reads the
interpreter's memory or the nonce pipe: the candidate runs in the harness's own process.

``python -I -S sandbox_launcher.py --reap UID`` only kills every process of UID (parent backstop).
"""
from __future__ import annotations

import ctypes
import marshal
import os
import resource
import select
import stat
import struct
import sys
import time

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
CTL_FD, VERDICT_FD, NONCE_FD = 3, 4, 5  # fixed numbers inside the sandbox
SETUP_FAILED_EXIT = 125
VERDICT_TAG = b"GSPO-VERDICT"
PRIVATE_DIRS = ("/var/tmp", "/dev/shm")  # world-writable: covered by the private /tmp
HIDDEN_DIRS = ("/run",)  # host service sockets (dbus, databases) and runtime state: emptied
SIGKILL = 9  # numeric: the signal module pulls in enum, which costs milliseconds per run

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    ret = _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(ret, f"mount {target}")


def _write_ctl(record: dict) -> None:
    try:
        os.write(CTL_FD, (repr(record) + "\n").encode())
    except OSError:
        pass


def reap_uid(uid: int) -> bool:
    """Kill every process whose real uid is ``uid`` (needs root).

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
            for _ in range(3):
                os.kill(-1, SIGKILL)
        except BaseException:  # noqa: BLE001 - ESRCH: no other process at all
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
    return True


def _blocking_ancestor(path: str) -> str | None:
    """The top-most proper ancestor of ``path`` that 'other' users may not traverse, or None."""
    cur = "/"
    for part in path.strip("/").split("/")[:-1]:
        cur = os.path.join(cur, part)
        try:
            st = os.stat(cur)
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return cur
    return None


def _mask_dir(directory: str, keep: list[str]) -> None:
    """Cover ``directory`` with an empty read-only tmpfs, bind-mounting back only ``keep``."""
    fds = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in keep]
    _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in fds:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    _mount(None, directory, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")


def mask_dirs(keep_paths: list[str], hide: list[str]) -> list[str]:
    """Mask the directories that block ``keep_paths`` for other users, plus ``hide`` (keeping
    whatever of ``keep_paths`` lies inside them). Needs a private mount namespace. Returns them."""
    keep = sorted({os.path.realpath(p) for p in keep_paths if os.path.isdir(p)})
    keep = [p for p in keep if not any(p.startswith(o + "/") for o in keep)]  # outermost only
    masks = {b for b in (_blocking_ancestor(p) for p in keep) if b}
    masks |= {os.path.realpath(h) for h in hide if h and os.path.isdir(h) and os.path.realpath(h) != "/"}
    top = [m for m in masks if not any(m != o and m.startswith(o + "/") for o in masks)]
    for m in sorted(top):
        _mask_dir(m, [p for p in keep if p == m or p.startswith(m + "/")])
    return sorted(top)


def _setup_mounts(cfg: dict, feats: dict) -> None:
    """In our new mount namespace: masks, read-only everything, private /tmp and work dir."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    feats["masked"] = mask_dirs(cfg["keep_paths"], cfg["hide_dirs"] + list(HIDDEN_DIRS))
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0))
    feats["ro_root"] = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, 32) == 0
    size_mb = cfg["tmpfs_mb"]
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,nr_inodes=16384,mode=1777")
    for d in PRIVATE_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            _mount("/tmp", d, None, MS_BIND)
    work = cfg["workdir"]
    if not os.path.isdir(work):  # it lay under a directory we just covered: recreate it there
        os.makedirs(work, mode=0o700)
    else:  # the work dir lives elsewhere: give it its own private tmpfs
        _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,nr_inodes=16384,mode=0700")
    if cfg["uid"] is not None:
        os.chown(work, cfg["uid"], cfg["gid"])
    feats["private_tmp"] = True


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
                 "io", "cmath", "numbers", "struct", "queue", "threading", "time", "traceback"):
        try:
            __import__(name)
        except ImportError:
            pass


def _block_sockets() -> None:
    """Best-effort network ban when no network namespace could be created (bypassable)."""
    import socket

    def _denied(*_a, **_k):
        raise PermissionError("network access is disabled in the gspo sandbox")

    socket.socket = socket.create_connection = socket.socketpair = _denied  # type: ignore[assignment]


def _child_setup(cfg: dict, feats: dict) -> None:
    """Runs in the harness child before any candidate code; raises on failure."""
    if feats.get("pidns") and feats.get("mountns"):
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            feats["proc"] = True
        except OSError:
            feats["proc"] = False
    _apply_limits(cfg, feats)
    if not feats.get("netns"):
        _block_sockets()
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
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    _prctl(PR_SET_PDEATHSIG, SIGKILL)  # after the uid change, which clears it
    os.chdir(cfg["workdir"])
    os.umask(0o077)


def run_harness(solution: str, tests: str) -> None:
    """Run ``solution`` then ``tests`` in one namespace; report through VERDICT_FD; never returns.

    Verdict record (exactly one line): ``GSPO-VERDICT <nonce> <pid> <passed|failed|memory>``. The
    nonce sits in the NONCE pipe and is read only *after* the tests finished, so it is nowhere in
    this process's memory while candidate code runs; the pid must be the harness's own pid, so forked
    copies of the harness cannot vote. Everything used here is bound before candidate code runs, so
    patching builtins, os, sys or traceback has no effect, and the builtins the solution replaced
    are put back before the tests run. Any exception (SystemExit included) is a failure; an exit
    without a verdict is classified by the parent (never as passed).
    """
    import builtins

    _compile, _exec, _import = builtins.compile, builtins.exec, builtins.__import__
    _base_exc, _mem_err, _isinstance = BaseException, MemoryError, isinstance
    _read, _write, _exit, _getpid = os.read, os.write, os._exit, os.getpid
    _stdout, _stderr = sys.stdout, sys.stderr
    _tag, _verdict_fd, _nonce_fd = VERDICT_TAG, VERDICT_FD, NONCE_FD  # module globals are patchable
    pristine = dict(builtins.__dict__)
    _clear, _restore = builtins.__dict__.clear, builtins.__dict__.update
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    status = b"failed"
    try:
        _exec(_compile(solution, "<solution>", "exec"), namespace)
        _clear()  # undo patched or added builtins (e.g. AssertionError, abs) before the tests run
        _restore(pristine)
        namespace["__builtins__"] = builtins
        _exec(_compile(tests, "<tests>", "exec"), namespace)
        status = b"passed"
    except _base_exc as exc:  # noqa: BLE001 - everything, SystemExit included, is a failure
        status = b"memory" if _isinstance(exc, _mem_err) else b"failed"
        namespace = None
        try:  # imported only now: a patched traceback module can garble stderr, not the verdict
            traceback = _import("traceback")
            tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None  # skip our frame
            text = "".join(traceback.format_exception(type(exc), exc, tb))
            _stderr.flush()
            _write(2, text[-8192:].encode("utf-8", "replace"))
        except _base_exc:  # noqa: BLE001
            try:
                _write(2, b"(the harness could not format the exception)\n")
            except _base_exc:  # noqa: BLE001
                pass
    namespace = None  # free the candidate's objects before allocating the verdict
    for stream in (_stdout, _stderr):
        try:
            stream.flush()
        except _base_exc:  # noqa: BLE001
            pass
    try:
        nonce = _read(_nonce_fd, 64)
        if len(nonce) == 32:
            _write(_verdict_fd, b"%s %s %d %s\n" % (_tag, nonce, _getpid(), status))
            _exit(0)
    except _base_exc:  # noqa: BLE001
        pass
    _exit(3)  # the nonce was gone or the verdict pipe closed: tampering


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
    """Renumber the inherited pipes to CTL_FD, VERDICT_FD, NONCE_FD; close everything else."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in zip((CTL_FD, VERDICT_FD, NONCE_FD), high):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    os.closerange(NONCE_FD + 1, 64 + len(fds))


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
    _move_fds([int(a) for a in argv[:3]])
    cfg = _read_config()
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
    if feats["mountns"]:
        try:
            _setup_mounts(cfg, feats)
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
        run_harness(cfg["solution"], cfg["tests"])
    os.close(VERDICT_FD)
    os.close(NONCE_FD)
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

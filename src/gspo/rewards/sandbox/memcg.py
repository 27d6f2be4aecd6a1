"""Memory cgroup of a sandboxed run (parent side): one bound on everything the run makes resident.

The kernel charges a memory cgroup for every page its processes fault in, whatever the kind:
anonymous memory of all processes and threads, page tables and kernel objects, tmpfs and /dev/shm
files, memfd files, System V shared memory (which outlives its creator), and tmpfs mounted in
namespaces the run creates. Reaching the limit first makes the kernel reclaim what it can (page
cache), then the OOM killer kills a process *of this cgroup*, never the trainer.

One cgroup per sandbox slot (uid), a child of the trainer's own cgroup, named
``gspo-sandbox-<uid>``: created on first use and kept (creating and removing one per run would leave
"zombie" memory cgroups behind as long as cached pages stay charged to them). Slots are exclusive
across processes, so a cgroup serves one run at a time; its limit is set and its counters are reset
before every run.

cgroup v1 (``memory`` hierarchy) and v2 (unified, with the memory controller enabled for the
trainer's cgroup's children, as in a container's root cgroup or a delegated systemd unit) are
supported. Without either, ``prepare`` returns None and the sandbox logs that it runs without a
memory bound on shared memory (see docs/security.md).
"""
from __future__ import annotations

import functools
import itertools
import os

MIB = 1 << 20


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@functools.lru_cache(maxsize=1)
def base() -> tuple[int, str] | None:
    """(version, directory) of this process's memory cgroup, where per-slot cgroups are made."""
    try:
        own = _read("/proc/self/cgroup").splitlines()
        mounts = _read("/proc/self/mountinfo").splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in own:
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    for line in mounts:
        fields = line.split()
        sep = fields.index("-")
        fstype, root, mnt = fields[sep + 1], fields[3], fields[4]
        opts = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
        if fstype == "cgroup" and "memory" in opts and v1_path is not None:
            found = _under(mnt, root, v1_path, 1)
        elif fstype == "cgroup2" and v2_path is not None:
            found = _under(mnt, root, v2_path, 2)
        else:
            continue
        if found is not None:
            return found
    return None


def _under(mnt: str, root: str, path: str, version: int) -> tuple[int, str] | None:
    if not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    directory = os.path.join(mnt, path[len(root):].lstrip("/"))
    if version == 2:
        try:
            if "memory" not in _read(os.path.join(directory, "cgroup.controllers")).split():
                return None
            if "memory" not in _read(os.path.join(directory, "cgroup.subtree_control")).split():
                _write(os.path.join(directory, "cgroup.subtree_control"), "+memory")
        except OSError:
            return None
    return (version, directory) if os.access(directory, os.W_OK) else None


class RunCgroup:
    """The slot's cgroup during one run."""

    def __init__(self, version: int, path: str, limit_mb: int, ephemeral: bool = False) -> None:
        self.version, self.path, self.ephemeral = version, path, ephemeral
        self.procs_fd = self._peak_fd = None
        limit = str(limit_mb * MIB)
        if version == 1:
            memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
            try:
                _write(os.path.join(path, "memory.limit_in_bytes"), limit)
            except OSError:  # lowering it below memsw's limit is refused in this order
                _write(memsw, limit)
                _write(os.path.join(path, "memory.limit_in_bytes"), limit)
            if os.path.exists(memsw):  # swap counted too (swap accounting enabled)
                _write(memsw, limit)
            for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
                _write(os.path.join(path, name), "0")
        else:
            _write(os.path.join(path, "memory.max"), limit)
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _write(os.path.join(path, "memory.swap.max"), "0")
        self.oom_before = self._oom_kills()
        self._peak_fd = self._open_peak()
        self.procs_fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def add(self, pid: int) -> bool:
        """Move process ``pid`` (the launcher, before it forks) into the cgroup."""
        try:
            os.write(self.procs_fd, str(pid).encode())
            return True
        except OSError:
            return False

    def _open_peak(self) -> int | None:
        if self.version == 1:
            return None
        try:  # Linux >= 6.12: writing resets the peak as seen through this descriptor
            fd = os.open(os.path.join(self.path, "memory.peak"), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            os.write(fd, b"reset\n")
            return fd
        except OSError:
            os.close(fd)
            return None

    def _oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in _read(os.path.join(self.path, name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def finish(self) -> dict:
        """After the run: -> {"peak_mb": float | None, "oom_kills": int}."""
        peak = None
        try:
            if self.version == 1:
                peak = int(_read(os.path.join(self.path, "memory.max_usage_in_bytes"))) / MIB
            elif self._peak_fd is not None:
                peak = int(os.pread(self._peak_fd, 64, 0)) / MIB
        except (OSError, ValueError):
            pass
        return {"peak_mb": peak, "oom_kills": self._oom_kills() - self.oom_before}

    def close(self) -> None:
        for fd in (self.procs_fd, self._peak_fd):
            if fd is not None:
                os.close(fd)
        self.procs_fd = self._peak_fd = None
        if self.ephemeral:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


_counter = itertools.count()


def prepare(slot: str | None, limit_mb: int) -> RunCgroup | None:
    """The cgroup of ``slot`` (a sandbox uid) with its limit set, or a fresh one for this run only
    (``slot`` None: non-root mode, no slots); None where no memory cgroup can be made."""
    found = base()
    if found is None:
        return None
    version, directory = found
    name = f"gspo-sandbox-{slot}" if slot is not None else f"gspo-sandbox-p{os.getpid()}-{next(_counter)}"
    path = os.path.join(directory, name)
    cgroup = None
    try:
        os.makedirs(path, exist_ok=True)
        cgroup = RunCgroup(version, path, limit_mb, ephemeral=slot is None)
        return cgroup
    except OSError:
        if slot is None:
            try:
                os.rmdir(path)
            except OSError:
                pass
        return None

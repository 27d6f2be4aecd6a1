"""Parent-side plumbing of the sandbox: pipes, reading the launcher's output, killing, cleaning up."""
from __future__ import annotations

import ast
import os
import selectors
import shutil
import signal
import stat
import subprocess
import time

EXIT_GRACE_S = 0.5  # after the launcher exited, how long leftover pipe writers may linger


class Sink:
    """Keeps the first ``keep`` bytes of a stream; reports when ``budget`` bytes were exceeded."""

    def __init__(self, keep: int, budget: int) -> None:
        self.keep, self.budget, self.total, self.data = keep, budget, 0, bytearray()

    def feed(self, chunk: bytes) -> bool:
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        return self.total <= self.budget


def pipe_pair() -> tuple[int, int]:
    return os.pipe()  # both ends close-on-exec: concurrent Popen calls cannot inherit them


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def launcher_exited(pid: int) -> bool:
    """Non-reaping check (the zombie keeps the pid and process group id from being reused)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def communicate(proc: subprocess.Popen, sinks: dict[int, Sink], deadline: float) -> bool:
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
            if exited_at is None and (pidfd is None and launcher_exited(proc.pid)):
                exited_at = now
                kill_group(proc.pid)
            limit = deadline if exited_at is None else exited_at + EXIT_GRACE_S
            if now >= limit:
                backstop = exited_at is None
                break
            wait = min(limit - now, 0.05 if pidfd is None else limit - now)
            for key, _ in sel.select(wait):
                if key.fd == pidfd:
                    sel.unregister(pidfd)
                    exited_at = time.monotonic()
                    kill_group(proc.pid)
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
        kill_group(proc.pid)
    return backstop


def parse_ctl(raw: bytes) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            rec = ast.literal_eval(line)
            records.setdefault(rec["kind"], rec)
        except (ValueError, KeyError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
    return records


def cleanup_world_writable(uid: int, workdir: str) -> None:
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


def remove_tree(root: str) -> None:
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

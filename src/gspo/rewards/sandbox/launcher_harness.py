"""Test harness of the sandbox (child side): runs the solution, then the tests, and reports a verdict.

Imported by ``launcher.py`` before any candidate code exists in the process. See ``run_harness``
and docs/security.md ("The verdict channel", "Trace hooks and introspection").
"""
from __future__ import annotations

import os
import sys

VERDICT_TAG = b"GSPO-VERDICT"
CTL_FD, VERDICT_FD, NONCE_FD, TESTS_FD = 3, 4, 5, 6  # fixed numbers inside the sandbox
AF_UNIX = 1
# Audit events refused while candidate code runs. Trace and profile functions (and the 3.12+
# monitoring API) can rewrite the harness's variables or jump over the tests' asserts; an audit
# hook of the candidate's own would get control inside the harness's exec/compile calls.
BLOCKED_EVENTS = frozenset({
    "sys.settrace", "sys.setprofile", "sys._settraceallthreads", "sys._setprofileallthreads",
    "sys.monitoring.register_callback", "sys.monitoring.use_tool_id", "sys.addaudithook",
})


def _audit_hook():
    """The harness's audit hook (PEP 578; it cannot be removed from Python code). Everything it
    uses is bound here, so patching builtins or modules does not disarm it."""
    blocked, unix, no_fd = BLOCKED_EVENTS, AF_UNIX, -1
    runtime_error, permission_error = RuntimeError, PermissionError

    def hook(event, args):
        if event in blocked:
            raise runtime_error(f"{event} is disabled in the gspo sandbox")
        if event == "socket.__new__" and args[1] not in (unix, no_fd):  # (self, family, type, proto)
            raise permission_error("network access is disabled in the gspo sandbox")

    return hook


def run_harness(solution: str, tests_size: int, tests_digest: str) -> None:
    """Run ``solution`` then the tests in one namespace; report through VERDICT_FD; never returns.

    The test program is not in this process while the solution runs: it waits in the TESTS pipe and
    is read (``tests_size`` bytes, checked against ``tests_digest``: a program that drained or
    refilled the pipe fails) only after the solution returned, then compiled and its source dropped.
    The audit hook above is installed before the solution runs and stays to the end.

    Verdict record (exactly one line): ``GSPO-VERDICT <nonce> <pid> <passed|failed|memory>``. The
    nonce sits in the NONCE pipe and is read only *after* the tests finished, so it is nowhere in
    this process's memory while candidate code runs; the pid must be the harness's own pid, so forked
    copies of the harness cannot vote. Everything used here is bound before candidate code runs, so
    patching builtins, os, sys or traceback has no effect, and the builtins the solution replaced
    are put back before the tests run. Any exception (SystemExit included) is a failure; an exit
    without a verdict is classified by the parent (never as passed).
    """
    import builtins
    from _blake2 import blake2b  # built into CPython (hashlib would load OpenSSL: milliseconds)

    _compile, _exec, _import, _dict = builtins.compile, builtins.exec, builtins.__import__, dict
    _base_exc, _mem_err, _isinstance, _len = BaseException, MemoryError, isinstance, len
    _runtime_error = RuntimeError
    _read, _write, _exit, _getpid = os.read, os.write, os._exit, os.getpid
    _stdout, _stderr = sys.stdout, sys.stderr
    _blake2b, _join = blake2b, b"".join
    _tag, _verdict_fd, _nonce_fd, _tests_fd = VERDICT_TAG, VERDICT_FD, NONCE_FD, TESTS_FD
    pristine = tuple(builtins.__dict__.items())  # immutable: gc-reachable, but cannot be edited
    _clear, _restore = builtins.__dict__.clear, builtins.__dict__.update
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    status = b"failed"
    sys.addaudithook(_audit_hook())
    try:
        _exec(_compile(solution, "<solution>", "exec"), namespace)
        solution = None
        _clear()  # undo patched or added builtins (e.g. AssertionError, abs) before the tests run
        _restore(_dict(pristine))
        namespace["__builtins__"] = builtins
        chunks, got = [], 0
        while got < tests_size:
            chunk = _read(_tests_fd, tests_size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += _len(chunk)
        raw = _join(chunks)
        chunks = None
        if got != tests_size or _blake2b(raw, digest_size=32).hexdigest() != tests_digest:
            raise _runtime_error("the test program did not arrive intact (its pipe was read or refilled)")
        code = _compile(raw.decode("utf-8", "surrogatepass"), "<tests>", "exec")
        raw = None
        _exec(code, namespace)
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
    namespace = code = None  # free the candidate's objects before allocating the verdict
    for stream in (_stdout, _stderr):
        try:
            stream.flush()
        except _base_exc:  # noqa: BLE001
            pass
    try:
        nonce = _read(_nonce_fd, 64)
        if _len(nonce) == 32:
            _write(_verdict_fd, b"%s %s %d %s\n" % (_tag, nonce, _getpid(), status))
            _exit(0)
    except _base_exc:  # noqa: BLE001
        pass
    _exit(3)  # the nonce was gone or the verdict pipe closed: tampering

"""Hostile-code suite for gspo.rewards.sandbox.

Every attack must end not-passed (or be contained, for attacks that do not aim at the verdict) and
leave nothing behind: no process of the sandbox uids, no file of theirs in the world-writable
directories, no file outside the work dir, and the test process's cwd, environment and process
group intact. The fork bomb is bounded by ``max_processes`` (containment is checked first by
``test_process_limit_is_enforced``) and by a short wall clock. Network tests only ever target
127.0.0.1, on a port this test listens on.
"""
from __future__ import annotations

import os
import socket
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from gspo.rewards import sandbox
from gspo.rewards.sandbox import ExecResult, SandboxLimits, run_tests

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

UID_LO, UID_HI = 61150, 61184  # the range these tests hand out (see the autouse fixture)
LIMITS = SandboxLimits(timeout_s=2.0, cpu_s=2.0, memory_mb=256, max_processes=16, max_output_bytes=4096)
REPO = Path(__file__).resolve().parents[2]
FAILING_TESTS = "assert solve() == 42"  # the attacker's solve() never returns 42
IS_ROOT = os.geteuid() == 0


def _sandbox_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ruid = int(status.split("\nUid:")[1].split()[0])
        if UID_LO <= ruid < UID_HI:
            found.append(f"{pid} uid={ruid} {status.splitlines()[0]}")
    return found


def _sandbox_files() -> list[str]:
    found = []
    for directory in ("/tmp", "/var/tmp", "/dev/shm"):
        for entry in os.scandir(directory):
            try:
                if UID_LO <= entry.stat(follow_symlinks=False).st_uid < UID_HI:
                    found.append(entry.path)
            except OSError:
                pass
    return found


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def contained(monkeypatch):
    """Private uid range; after the attack: nothing left and our own state intact."""
    monkeypatch.setattr(sandbox, "UID_BASE", UID_LO)
    monkeypatch.setattr(sandbox, "UID_SLOTS", UID_HI - UID_LO)
    monkeypatch.setenv("GSPO_FAKE_SECRET", "s3cr3t-value-never-visible")
    cwd, env, pgrp = os.getcwd(), _environ(), os.getpgrp()
    yield
    assert os.getcwd() == cwd
    assert _environ() == env
    assert os.getpgrp() == pgrp
    if IS_ROOT:
        assert _sandbox_processes() == []
        assert _sandbox_files() == []


def attack(code: str, tests: str = FAILING_TESTS, limits: SandboxLimits = LIMITS) -> ExecResult:
    """Run attacker code (given a wrong ``solve`` unless it defines one); it must not pass."""
    code = textwrap.dedent(code)
    if "def solve" not in code:
        code += "\ndef solve():\n    return 0\n"
    result = run_tests(code, tests, limits=limits)
    assert not result.passed, result
    assert result.status != "passed"
    return result


# --- CPU and time ------------------------------------------------------------------------------

def test_infinite_loop():
    assert attack("while True:\n    pass").status == "timeout"


def test_busy_loop_in_threads():
    r = attack("""
        import threading
        def spin():
            while True:
                pass
        for _ in range(3):
            threading.Thread(target=spin, daemon=True).start()
        threading.Event().wait()
    """)
    assert r.status == "timeout"


def test_sigterm_ignored_and_sleeping():
    r = attack("""
        import signal, time
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    """, limits=SandboxLimits(timeout_s=1.0))
    assert r.status == "timeout"


# --- processes ---------------------------------------------------------------------------------

def _forks_are_bounded() -> bool:
    """Containment check that must hold before the fork bomb runs: forks stop at max_processes."""
    r = run_tests(textwrap.dedent("""
        import os, time
        made = 0
        for i in range(40):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            made += 1
        print(made)
    """), "pass", limits=SandboxLimits(timeout_s=5, max_processes=8))
    return r.passed and int(r.stdout) < 8


def test_process_limit_is_enforced():
    assert _forks_are_bounded()


def test_fork_bomb():
    if not _forks_are_bounded():
        pytest.fail("process limit not enforced here: refusing to run a fork bomb")
    r = attack("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, limits=SandboxLimits(timeout_s=1.5, cpu_s=1.5, max_processes=8))
    assert r.status in ("timeout", "failed")


def test_sleeping_children_left_behind():
    attack("""
        import os, subprocess, sys, time
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    """)


def test_setsid_double_fork_daemon():
    attack("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.setsid()
                for fd in range(3):
                    os.close(fd)
                time.sleep(120)
            os._exit(0)
        time.sleep(0.2)
    """)


def test_harness_fork_cannot_vote():
    """A forked copy of the harness whose tests pass must not turn the run into a pass."""
    r = attack("""
        import os, time
        CHILD = os.fork() == 0
        def solve():
            if not CHILD:
                time.sleep(0.3)  # let the child finish first
            return 42 if CHILD else 0
    """)
    assert r.status in ("failed", "tampered")


def test_kill_parent_and_process_groups():
    r = attack(f"""
        import os, signal
        for target in (os.getppid(), {os.getpid()}, 1):
            for sig in (signal.SIGKILL, signal.SIGTERM):
                try:
                    os.kill(target, sig)
                except OSError:
                    pass
        for pgid in ({os.getpgrp()}, 0):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    """)
    assert r.status in ("failed", "tampered")  # it may kill itself, never us


def test_privilege_escalation_attempts():
    r = attack("""
        import os
        results = []
        for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0]),
                     lambda: os.chroot('/'), lambda: os.nice(-5)):
            try:
                call()
                results.append('allowed')
            except OSError:
                results.append('denied')
        print(results)
    """)
    if IS_ROOT:
        assert "allowed" not in r.stdout, r.stdout


# --- memory ------------------------------------------------------------------------------------

def test_memory_bomb():
    r = attack("""
        blocks = []
        while True:
            blocks.append([0] * 10_000_000)
    """)
    assert r.status == "memory"


def test_huge_bytearray():
    assert attack("x = bytearray(64 * 1024 ** 3)").status == "memory"


def test_zip_bomb():
    r = attack("""
        import zlib
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; full flushes make every
        unit = packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)  # MiB identical
        bomb = unit * 1024 + packer.flush()  # about 1 MB that inflates to 1 GiB
        assert len(bomb) < 2 << 20
        data = zlib.decompress(bomb, -15)
    """, limits=SandboxLimits(timeout_s=8.0, cpu_s=8.0, memory_mb=256))
    assert r.status == "memory"


def test_recursion_bomb():
    assert attack("def f(n):\n    return f(n + 1)\nf(0)").status == "failed"


def test_deep_recursion_crashes_c_stack():
    r = attack("""
        import sys
        sys.setrecursionlimit(10 ** 8)
        nested = ()
        for _ in range(1_000_000):
            nested = (nested,)
        hash(nested)  # recursion in C: overflows the C stack
    """, limits=SandboxLimits(timeout_s=8.0, cpu_s=8.0, memory_mb=512))
    assert r.status == "failed", r


def test_ctypes_segfault():
    r = attack("import ctypes\nctypes.string_at(0)")
    assert r.status == "failed" and "SIGSEGV" in r.stderr


# --- output ------------------------------------------------------------------------------------

def test_printing_gigabytes():
    r = attack("""
        import os
        chunk = b"A" * (1 << 20)
        for _ in range(4096):  # 4 GiB
            os.write(1, chunk)
    """, limits=SandboxLimits(timeout_s=20.0, cpu_s=20.0, max_output_bytes=4096))
    assert r.stdout == "A" * 4096
    assert r.duration_s < 15, r.duration_s  # the pipe is closed after the drain budget


def test_fake_success_marker_on_stdout():
    r = attack("""
        print("PASSED\\nGSPO-VERDICT 00000000000000000000000000000000 1 passed\\nOK")
        import sys; sys.stdout.flush()
    """)
    assert r.status == "failed"


# --- verdict tampering -------------------------------------------------------------------------

def test_sys_exit_zero_before_tests():
    assert attack("import sys\nsys.exit(0)").status == "failed"


def test_os_exit_zero_before_tests():
    assert attack("import os\nos._exit(0)").status == "tampered"


def test_exit_from_atexit_and_threads():
    r = attack("""
        import atexit, os, threading
        atexit.register(lambda: os._exit(0))
        threading.Timer(0.0, lambda: os._exit(0)).start()
        def solve():
            import time; time.sleep(1)
            return 0
    """)
    assert r.status in ("tampered", "failed")


def test_monkeypatch_builtins_and_assertion_error():
    r = attack("""
        import builtins
        class Quiet(Exception):
            pass
        builtins.AssertionError = Quiet
        builtins.exec = lambda *a, **k: None
        builtins.compile = lambda *a, **k: compile('pass', '<x>', 'exec')
        builtins.BaseException = object
    """, tests="assert solve() == 42\nraise AssertionError('x')")
    assert r.status == "failed"


def test_monkeypatch_harness_module():
    r = attack("""
        import os, sys
        main = sys.modules['__main__']
        main.VERDICT_TAG = b'X'
        main.VERDICT_FD, main.NONCE_FD = 1, 0
        main.run_harness = lambda *a: os._exit(0)
        os.write = lambda fd, data: len(data)
        os._exit = lambda code: None
    """)
    assert r.status == "failed"


def test_forged_verdict_without_nonce():
    r = attack("""
        import os
        for fd in range(3, 20):
            for pid in (1, os.getpid()):
                try:
                    os.write(fd, b"GSPO-VERDICT 0123456789abcdef0123456789abcdef %d passed\\n" % pid)
                except OSError:
                    pass
    """)
    assert r.status == "tampered"


def test_closing_the_verdict_pipe():
    assert attack("import os\nos.closerange(3, 256)\ndef solve():\n    return 42",
                  tests="assert solve() == 42").status == "tampered"


def test_systemexit_raised_inside_tests():
    r = attack("def solve():\n    raise SystemExit(0)")
    assert r.status == "failed"


def test_hostile_exception_and_traceback_module():
    r = attack("""
        import sys, types
        sys.modules['traceback'] = types.SimpleNamespace(format_exception=lambda *a: 1 / 0)
        class Evil(Exception):
            def __str__(self):
                raise RuntimeError('no')
        def solve():
            raise Evil()
    """)
    assert r.status == "failed"


def test_trace_hook_cannot_skip_asserts():
    r = attack("""
        import sys
        def tracer(frame, event, arg):
            return tracer
        sys.settrace(tracer)
    """)
    assert r.status == "failed"


# --- file system -------------------------------------------------------------------------------

def test_write_outside_workdir():
    marker = f"gspo-hostile-{uuid.uuid4().hex}"
    targets = [f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}", str(REPO / marker),
               str(REPO / "src" / marker), f"/{marker}"]
    r = attack(f"""
        import os
        for path in {targets!r}:
            try:
                with open(path, 'w') as f:
                    f.write('pwned')
            except OSError:
                pass
    """)
    assert r.status == "failed"
    for path in targets:
        assert not os.path.exists(path), path


def test_delete_and_modify_files_outside(tmp_path):
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir(mode=0o777)
    victim = victim_dir / "keep.txt"
    victim.write_text("precious")
    os.chmod(victim_dir, 0o777)
    os.chmod(victim, 0o666)
    repo_file = Path(__file__)  # a file of ours: if containment ever broke, only this suite suffers
    before = repo_file.read_bytes()
    attack(f"""
        import os, shutil
        for call in (lambda: os.remove({str(victim)!r}), lambda: shutil.rmtree({str(victim_dir)!r}),
                     lambda: open({str(victim)!r}, 'w').write('gone'),
                     lambda: open({str(repo_file)!r}, 'a').write('# pwned'),
                     lambda: os.rename({str(repo_file)!r}, '/tmp/x')):
            try:
                call()
            except OSError:
                pass
    """)
    assert victim.read_text() == "precious"
    assert repo_file.read_bytes() == before


def test_fill_the_disk():
    r = attack("""
        import os
        chunk = b'x' * (1 << 20)
        for i in range(10_000):
            with open(f'f{i}', 'wb') as f:
                f.write(chunk)
    """, limits=SandboxLimits(timeout_s=10, max_file_mb=4))
    assert r.status == "failed" and "No space left" in r.stderr


def test_change_cwd_and_environment():
    """The fixture checks that our cwd and environment are unchanged afterwards."""
    attack(f"""
        import os
        os.chdir('/')
        os.environ['GSPO_FAKE_SECRET'] = 'overwritten'
        os.environ['PATH'] = '/nowhere'
        os.putenv('HOME', '/nowhere')
        for target in ('/proc/{os.getpid()}/cwd', '/proc/1/cwd'):
            try:
                os.symlink('/', target)
            except OSError:
                pass
    """)


# --- secrets -----------------------------------------------------------------------------------

def test_environment_secrets_invisible():
    r = attack("""
        import os
        print(dict(os.environ))
        for pid in ('self', '1', str(os.getppid())):
            try:
                print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError:
                pass
    """, limits=SandboxLimits(timeout_s=2.0, max_output_bytes=65536))
    assert "s3cr3t" not in r.stdout and "GSPO_FAKE_SECRET" not in r.stdout


def test_root_only_files_unreadable():
    r = attack("""
        import os
        readable = []
        for path in ('/etc/shadow', '/etc/gshadow', '/root/.bash_history', '/root/.ssh/id_rsa'):
            try:
                open(path, 'rb').read(1)
                readable.append(path)
            except OSError:
                pass
        try:
            listing = os.listdir('/root')
        except OSError:
            listing = []
        print(readable)
        print(listing)
    """)
    if IS_ROOT:
        readable, listing = r.stdout.splitlines()
        assert readable == "[]"
        real = set(os.listdir("/root")) - {".pyenv"}  # the interpreter may live under /root
        assert not real & set(eval(listing)), listing  # noqa: S307 - our own repr


def test_no_other_processes_visible():
    r = attack("""
        import os
        print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
    """)
    if IS_ROOT:
        assert r.stdout.strip() == "[1]", r.stdout


# --- network -----------------------------------------------------------------------------------

def test_loopback_connection_fails():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp_port = udp.getsockname()[1]
    try:
        r = attack(f"""
            import socket
            outcome = []
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hello')
                outcome.append('tcp-connected')
            except OSError as exc:
                outcome.append(f'tcp-failed: {{exc}}')
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b'hello', ('127.0.0.1', {udp_port}))
                outcome.append('udp-sent')
            except OSError as exc:
                outcome.append(f'udp-failed: {{exc}}')
            print(outcome)
        """)
        assert "tcp-failed" in r.stdout, r.stdout
        listener.settimeout(0.2)
        with pytest.raises(OSError):  # nobody ever reached our listener
            listener.accept()
        udp.settimeout(0.2)
        with pytest.raises(OSError):
            udp.recvfrom(16)
    finally:
        listener.close()
        udp.close()


def test_patched_builtins_are_restored_before_tests():
    r = attack("""
        import builtins
        builtins.abs = lambda x: 0
        builtins.all = lambda x: True
    """, tests="assert abs(solve() - 42) < 1e-9\nassert all([solve() == 42])")
    assert r.status == "failed"

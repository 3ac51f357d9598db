"""The isolation layers of the code sandbox: which exist, how each one starts a zygote, and what its
self-test expects a program inside to see.

The ladder, strongest first (``rewards/sandbox_probe.py`` walks it once per process and configuration):

* ``bwrap`` -- bubblewrap: new user, PID, network, IPC, UTS and cgroup namespaces and a root made of
  read-only binds, started as an unprivileged uid when we are root (``bwrap-root`` when that drop is
  impossible). Needs unprivileged user namespaces, or root.
* ``landlock`` -- no namespaces, no privileges: the zygote runs on the host and every child it forks
  confines itself (``Confinement`` in ``rewards/sandbox_worker.py``): a Landlock domain that may read
  the Python runtime and the system paths and write only its scratch directory, and a seccomp filter
  that allows no sockets, no new processes, signals to itself only, no ptrace. Needs Linux >= 5.13
  with Landlock enabled.
* ``none`` -- rlimits, a scrubbed environment and a private working directory; used only when asked
  for by name (``isolation: none``).

Every name here is what recipes and the CLI write (``isolation: auto | bubblewrap | landlock | none``)
or what results record (``bwrap``, ``bwrap-root``, ``landlock``, ``none``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rewards import sandbox_worker

if TYPE_CHECKING:
    from rewards.sandbox_config import SandboxConfig

Mode = Literal["bwrap", "bwrap-root", "landlock", "none"]
Choice = Literal["auto", "bubblewrap", "landlock", "none"]

#: What a configuration may ask for, and the layers each choice may use, in the order they are tried.
CHOICES: dict[str, tuple[str, ...]] = {
    "auto": ("bubblewrap", "landlock"),
    "bubblewrap": ("bubblewrap",),
    "landlock": ("landlock",),
    "none": (),
}

WORKER_SOURCE = Path(sandbox_worker.__file__).read_text()
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/"}


# ----------------------------------------------------------------------------------------------------
# Which layers this host offers
# ----------------------------------------------------------------------------------------------------


def resolve_bwrap(config: SandboxConfig) -> str:
    """The bubblewrap executable ``config`` asks for ("" when none is found)."""
    return config.bwrap or os.environ.get("CASCADE_SANDBOX_BWRAP") or shutil.which("bwrap") or ""


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none). A separate name so tests can hide Landlock."""
    return sandbox_worker.landlock_abi()


def candidates(config: SandboxConfig, layer: str) -> tuple[list[str], str]:
    """(modes to self-test for ``layer``, why there are none) on this host."""
    if layer == "bubblewrap":
        bwrap = resolve_bwrap(config)
        if not bwrap or not os.access(bwrap, os.X_OK):
            return [], f"no executable bubblewrap ({bwrap or 'bwrap on PATH'})"
        return (["bwrap", "bwrap-root"] if os.geteuid() == 0 else ["bwrap"]), ""
    if layer == "landlock":
        abi = landlock_abi()
        if abi < 1:
            return [], "the kernel has no Landlock (Linux >= 5.13 with landlock in its lsm= list)"
        if os.uname().machine not in sandbox_worker._SECCOMP_ARCH:
            return [], f"no seccomp filter is written for the {os.uname().machine} architecture"
        return ["landlock"], ""
    raise ValueError(f"unknown isolation layer {layer!r}")


# ----------------------------------------------------------------------------------------------------
# Commands that start one zygote
# ----------------------------------------------------------------------------------------------------


def python_layout(config: SandboxConfig) -> tuple[str, list[str], list[str]]:
    """(interpreter, directories to expose read-only, sys.path additions) for this process's Python.

    A virtualenv's ``bin/python`` is a link into the base installation; the sandbox runs the base
    interpreter with its own site-packages, never the venv (which lives inside the project tree).
    """
    exe = os.path.realpath(sys.executable)
    binds = sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)})
    if not any(exe.startswith(prefix + os.sep) for prefix in binds):
        binds.append(os.path.dirname(exe))
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    site_paths = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    site_paths = [p for p in site_paths if os.path.isdir(p)] + list(config.extra_python_paths)
    binds += [os.path.realpath(p) for p in (*config.extra_python_paths, *config.extra_ro_binds)]
    return exe, binds, site_paths


def _system_binds() -> list[str]:
    """bubblewrap arguments for the read-only system view: /usr, the /lib* and /bin links, a few /etc files."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _preload(config: SandboxConfig) -> list[str]:
    """Modules the zygote imports up front: pointless when a sandbox serves a single program."""
    return list(config.preload) if config.programs_per_sandbox > 1 else []


def bwrap_argv(config: SandboxConfig, bwrap: str, staged: dict[str, str] | None = None) -> list[str]:
    """The full bubblewrap command line that starts one zygote.

    ``staged`` maps bind sources to the paths a privilege-dropping launcher mounted them at.
    """
    exe, binds, site_paths = python_layout(config)
    uid = str(config.unprivileged_uid)
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
        "--setenv", "HOME", "/tmp",
        "--setenv", "TMPDIR", "/tmp",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "LC_ALL", "C.UTF-8",
        "--setenv", "USER", "sandbox",
        "--uid", uid,
        "--gid", uid,
        "--hostname", "sandbox",
    ]  # fmt: skip
    argv += _system_binds()
    for path in binds:
        argv += ["--ro-bind", (staged or {}).get(path, path), path]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(config.tmpfs_mb << 20), "--tmpfs", "/tmp",
        "--size", str(config.shm_mb << 20), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", "/tmp",
    ]  # fmt: skip
    zygote = {
        "namespaced": True,
        "scratch": "/tmp",
        "wipe": ["/tmp", "/dev/shm"],
        "site_paths": site_paths,
        "preload": _preload(config),
    }
    return [*argv, "--", exe, "-I", "-S", "-c", WORKER_SOURCE, "zygote", json.dumps(zygote)]


def landlock_rules(config: SandboxConfig, scratch: str) -> dict[str, list[str]]:
    """What the Landlock layer's children may touch: the same view bubblewrap builds, as rules.

    Read (and execute): /usr, the /lib* and /bin directories, three /etc files and the Python
    installation. Read and write: the five harmless character devices. Everything: the scratch directory.
    ``abi``: the Landlock ABI to build the ruleset for (the kernel's, or less when pinned).
    """
    _, binds, _ = python_layout(config)
    read = ["/usr", *(p for p in _SYSTEM_DIRS if os.path.isdir(p) and not os.path.islink(p))]
    read += [p for p in _SYSTEM_FILES if os.path.exists(p)] + binds
    abi = min(landlock_abi(), config.landlock_abi or landlock_abi())
    return {"abi": abi, "read": read, "write": [scratch], "devices": list(DEVICES)}


def zygote_command(
    config: SandboxConfig, mode: str, scratch: str | None
) -> tuple[list[str], str, dict[str, str]]:
    """(argv, cwd, env) that start one zygote under ``mode``; ``scratch`` is the host directory of the
    layers without a private /tmp (``landlock``, ``none``)."""
    exe, binds, site_paths = python_layout(config)
    env = dict(_ENV)
    if mode == "bwrap" and os.geteuid() == 0:
        # Root: a launcher (still root) stages the bind sources where the unprivileged uid can reach
        # them, drops to that uid and executes bubblewrap (see sandbox_worker.launch_main).
        staged = {src: f"/tmp/{i}" for i, src in enumerate(binds)}
        launch = {
            "stage": "/tmp",
            "stage_sources": binds,
            "uid": config.unprivileged_uid,
            "gid": config.unprivileged_uid,
            "argv": bwrap_argv(config, resolve_bwrap(config), staged),
        }
        return [exe, "-I", "-S", "-c", WORKER_SOURCE, "launch", json.dumps(launch)], "/", env
    if mode in ("bwrap", "bwrap-root"):
        return bwrap_argv(config, resolve_bwrap(config)), "/", env
    assert scratch is not None
    zygote = {
        "namespaced": False,
        "scratch": scratch,
        "wipe": [scratch],
        "scratch_bytes": config.tmpfs_mb << 20,
        "site_paths": site_paths,
        "preload": _preload(config),
    }
    if mode == "landlock":
        zygote["confine"] = landlock_rules(config, scratch)
    env.update(HOME=scratch, TMPDIR=scratch)
    return [exe, "-I", "-S", "-c", WORKER_SOURCE, "zygote", json.dumps(zygote)], scratch, env


# ----------------------------------------------------------------------------------------------------
# Self-test: what a program inside must see
# ----------------------------------------------------------------------------------------------------

PROBE = """
import json, os, socket

def attempt(action):
    try:
        return action()
    except OSError as exc:
        return type(exc).__name__

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return "forked"

print(json.dumps({
    "uid": os.getuid(),
    "hostname": socket.gethostname(),
    "interfaces": attempt(lambda: sorted(name for _, name in socket.if_nameindex())),
    "project": attempt(lambda: os.listdir(PROJECT) and "listed"),
    "secrets": any(k in os.environ for k in ("WANDB_API_KEY", "HF_TOKEN")),
    "socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close() or "created"),
    "fork": attempt(fork),
    "signal_parent": attempt(lambda: os.kill(os.getppid(), 0) or "sent"),
}))
"""


def expected_probe(config: SandboxConfig, mode: str) -> dict[str, object]:
    """What the probe must print under ``mode``; anything else fails the layer's self-test."""
    if mode in ("bwrap", "bwrap-root"):
        return {
            "uid": config.unprivileged_uid,
            "hostname": "sandbox",
            "interfaces": ["lo"],
            "project": "FileNotFoundError",
            "secrets": False,
        }
    if mode == "landlock":
        return {
            "project": "PermissionError",
            "secrets": False,
            "socket": "PermissionError",
            "fork": "PermissionError",
            "signal_parent": "PermissionError",
        }
    return {"secrets": False}

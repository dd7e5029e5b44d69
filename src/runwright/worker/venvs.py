"""Virtual environments for job code, built with uv and shared by requirements hash.

Two workers (or two threads) asking for the same environment at once build it once:
the builder holds an exclusive file lock, and ``.ready`` marks a finished build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from runwright.errors import ExecutionFailed

Log = Callable[[str], None]


def environment_key(requirements: tuple[str, ...], python: str | None) -> str:
    spec = {
        "python": python or f"{sys.version_info.major}.{sys.version_info.minor}",
        "requirements": sorted(requirements),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def base_interpreter() -> str:
    """The real interpreter behind this process (never a pyenv shim)."""
    return os.path.realpath(sys.executable)


def ensure_venv(
    cache: Path,
    requirements: tuple[str, ...],
    python: str | None,
    *,
    log: Log,
    find_links: str = "",
    offline: bool = False,
    passthrough: tuple[str, ...] = (),
) -> tuple[Path, bool]:
    """The interpreter of an environment with ``requirements``; builds it when missing.

    Returns ``(python_path, built_now)``.
    """
    key = environment_key(requirements, python)
    root = cache / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    venv = root / key
    interpreter = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return interpreter, False
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".ready").exists():
            return interpreter, False
        shutil.rmtree(venv, ignore_errors=True)  # a build that died halfway
        _build(venv, requirements, python, cache, log, find_links, offline, passthrough)
        (venv / ".ready").write_text(json.dumps({"requirements": list(requirements)}))
    return interpreter, True


def _build(
    venv: Path,
    requirements: tuple[str, ...],
    python: str | None,
    cache: Path,
    log: Log,
    find_links: str,
    offline: bool,
    passthrough: tuple[str, ...],
) -> None:
    uv = uv_binary()
    # Building a requirement runs its author's code (an sdist's build backend): it gets
    # none of the worker's settings or secrets.
    env = {name: os.environ[name] for name in passthrough if name in os.environ}
    env.update(
        PATH=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        HOME=str(cache),
        UV_CACHE_DIR=str(cache / "uv"),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    interpreter = python or base_interpreter()
    log(f"Creating the job environment (Python {python or 'of the worker'})")
    _run([uv, "venv", "--quiet", "--python", interpreter, str(venv)], env, "create the venv")
    if not requirements:
        return
    log(f"Installing requirements: {', '.join(requirements)}")
    command = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    if find_links:
        command += ["--find-links", find_links]
    if offline:
        command += ["--offline", "--no-index"] if find_links else ["--offline"]
    _run([*command, *requirements], env, "install the requirements")


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    try:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutionFailed(f"Could not {what}: {exc}", outcome="error") from exc
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip()
        raise ExecutionFailed(
            f"Could not {what} for the job (uv exited with {completed.returncode}):\n{detail}",
            outcome="error",
        )

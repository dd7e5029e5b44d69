"""The job package format: ``runwright.toml`` and per-environment configuration."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from runwright.errors import InvalidRequest

MANIFEST_NAME = "runwright.toml"
STEPS_NAME = "job.yaml"
_ENTRYPOINT = re.compile(r"^(?:[A-Za-z_][\w.]*:[A-Za-z_]\w*|[\w./-]+\.py)$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
_PYTHON = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What ``runwright.toml`` says about a package."""

    entrypoint: str
    requirements: tuple[str, ...] = ()
    description: str = ""
    python: str | None = None
    environments: tuple[str, ...] = field(default=())  # from config.<env>.json files
    steps: dict[str, Any] | None = None  # the validated job.yaml of a steps package

    @property
    def is_steps(self) -> bool:
        return self.steps is not None

    @property
    def is_function(self) -> bool:
        """``module:function`` (its return value is the result) rather than a script file."""
        return not self.entrypoint.endswith(".py")

    def to_json(self) -> dict[str, Any]:
        return {
            "entrypoint": self.entrypoint,
            "requirements": list(self.requirements),
            "description": self.description,
            "python": self.python,
            "environments": list(self.environments),
            **({"steps": self.steps} if self.steps is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            entrypoint=data["entrypoint"],
            requirements=tuple(data.get("requirements", ())),
            description=data.get("description", ""),
            python=data.get("python"),
            environments=tuple(data.get("environments", ())),
            steps=data.get("steps"),
        )


def parse_manifest(
    text: str, *, environments: tuple[str, ...] = (), steps: dict[str, Any] | None = None
) -> Manifest:
    """Validate ``runwright.toml``; every problem is named with the fix. A steps package
    (with ``job.yaml``) has no entrypoint: its steps name what they run."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"{MANIFEST_NAME} is not valid TOML: {exc}") from exc
    known = {"entrypoint", "requirements", "description", "python"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidRequest(
            f"{MANIFEST_NAME} has unknown keys {', '.join(unknown)}; "
            f"the keys are {', '.join(sorted(known))}."
        )
    entrypoint = data.get("entrypoint")
    if steps is not None:
        if entrypoint is not None:
            raise InvalidRequest(
                f"{MANIFEST_NAME} has an entrypoint, but this package has a {STEPS_NAME}: its "
                "steps say what runs. Remove the entrypoint (keep requirements and python)."
            )
        entrypoint = ""
    elif not isinstance(entrypoint, str) or not _ENTRYPOINT.match(entrypoint):
        raise InvalidRequest(
            f'{MANIFEST_NAME} needs entrypoint = "module:function" or "file.py" '
            f"(got {entrypoint!r})."
        )
    requirements = data.get("requirements", [])
    if not isinstance(requirements, list) or not all(
        isinstance(r, str) and r.strip() for r in requirements
    ):
        raise InvalidRequest(
            f'{MANIFEST_NAME}: requirements must be a list of strings, e.g. ["httpx==0.28.1"].'
        )
    description = data.get("description", "")
    if steps is not None and not description:
        description = str(steps.get("description") or "")
    if not isinstance(description, str):
        raise InvalidRequest(f"{MANIFEST_NAME}: description must be a string.")
    python = data.get("python")
    if python is not None and (not isinstance(python, str) or not _PYTHON.match(python)):
        raise InvalidRequest(f'{MANIFEST_NAME}: python must look like "3.11" (got {python!r}).')
    return Manifest(
        entrypoint=entrypoint,
        requirements=tuple(r.strip() for r in requirements),
        description=description,
        python=python,
        environments=environments,
        steps=steps,
    )


def environment_of_config_file(name: str) -> str | None:
    """``config.production.json`` -> ``production``; anything else -> None."""
    if not (name.startswith("config.") and name.endswith(".json")):
        return None
    middle = name[len("config.") : -len(".json")]
    return middle if middle and _ENVIRONMENT.match(middle) else None


def check_environment(name: str) -> str:
    if not _ENVIRONMENT.match(name):
        raise InvalidRequest(
            f"Environment {name!r} is not valid: use letters, digits, '-' and '_' (max 50)."
        )
    return name


def merge_config(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: objects merge key by key, anything else in ``overlay`` replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


HOST_CONFIG_PREFIX = "RUNWRIGHT_JOB_CONFIG__"


def host_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """``RUNWRIGHT_JOB_CONFIG__DATABASE__HOST=db1`` -> ``{"database": {"host": "db1"}}``.

    Names are lower-cased; values that parse as JSON (numbers, booleans, objects) keep
    their type, anything else is a string.
    """
    import json

    overrides: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(HOST_CONFIG_PREFIX):
            continue
        path = [part.lower() for part in name[len(HOST_CONFIG_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = overrides
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return overrides


SECRET_KEY_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key", "private_key")


def secret_values(config: dict[str, Any]) -> set[str]:
    """Values under keys that name a secret, to be masked in logs."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                lowered = str(key).lower()
                walk(value, secret or any(word in lowered for word in SECRET_KEY_WORDS))
        elif isinstance(node, list):
            for item in node:
                walk(item, secret)
        elif secret and isinstance(node, str | int | float) and not isinstance(node, bool):
            text = str(node)
            if len(text) >= 4:
                found.add(text)

    walk(config, False)
    return found

"""The job package format: ``runwright.toml`` and per-environment configuration."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from runwright.errors import InvalidRequest
from runwright.model.targets import TargetSelector

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
    # ``targets = {tags = [...], max_parallel = N}``: the entry point runs once per target
    targets: dict[str, Any] | None = None

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
            **({"targets": self.targets} if self.targets is not None else {}),
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
            targets=data.get("targets"),
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
    known = {"entrypoint", "requirements", "description", "python", "targets"}
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
        targets=_targets(data.get("targets"), steps is not None),
    )


def _targets(given: Any, is_steps: bool, where: str = MANIFEST_NAME) -> dict[str, Any] | None:
    if given is None:
        return None
    if is_steps:
        raise InvalidRequest(
            f"{MANIFEST_NAME} has targets, but this package has a {STEPS_NAME}: put "
            "`targets:` on the steps that run on targets instead."
        )
    if not isinstance(given, dict):
        raise InvalidRequest(
            f'{where}: targets must be a table, e.g. targets = {{tags = ["web"], '
            "max_parallel = 10}."
        )
    try:
        return TargetSelector.model_validate(given).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'targets'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidRequest(f"{where}: targets are not valid ({problems}).") from exc


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


# PEP 723 inline script metadata: a ``# /// script`` comment block of TOML.
_INLINE_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


def inline_metadata(source: str) -> dict[str, Any]:
    """The ``# /// script`` block of a script (PEP 723), as TOML data; {} without one."""
    blocks = [m for m in _INLINE_BLOCK.finditer(source) if m.group("type") == "script"]
    if not blocks:
        return {}
    if len(blocks) > 1:
        raise InvalidRequest("The script has more than one `# /// script` block; keep one.")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"The script's `# /// script` block is not valid TOML: {exc}") from exc


def script_manifest(filename: str, source: str) -> str:
    """The ``runwright.toml`` of a one-file script: its entry point, plus the
    dependencies and ``[tool.runwright]`` targets of its inline metadata."""
    metadata = inline_metadata(source)
    lines = [f"entrypoint = {_toml_string(filename)}"]
    dependencies = metadata.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise InvalidRequest(
            "The script's `# /// script` block: dependencies must be a list of strings, e.g. "
            '["httpx==0.28.1"].'
        )
    if dependencies:
        lines.append(f"requirements = [{', '.join(_toml_string(d) for d in dependencies)}]")
    tool = metadata.get("tool", {})
    ours = tool.get("runwright", {}) if isinstance(tool, dict) else {}
    if not isinstance(ours, dict):
        raise InvalidRequest("The script's `# /// script` block: [tool.runwright] must be a table.")
    unknown = sorted(set(ours) - {"targets"})
    if unknown:
        raise InvalidRequest(
            f"The script's [tool.runwright] has unknown keys {', '.join(unknown)}; "
            "the only key is targets."
        )
    targets = ours.get("targets")
    if targets is not None:
        checked = _targets(targets, False, "The script's [tool.runwright]")
        assert checked is not None
        tags = ", ".join(_toml_string(t) for t in checked["tags"])
        lines.append(f"targets = {{tags = [{tags}], max_parallel = {checked['max_parallel']}}}")
    text = "\n".join(lines) + "\n"
    parse_manifest(text)  # the same checks as a package's runwright.toml
    return text


def _toml_string(value: str) -> str:
    # JSON's string escapes are TOML's, as long as non-ASCII stays literal (TOML has
    # no surrogate-pair escapes).
    return json.dumps(value, ensure_ascii=False)

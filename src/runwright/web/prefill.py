"""What an edit form starts with, as the form's fields hold it (text), for forms.js to
fill in. Never a secret: a credential's secret part and a sensitive variable's value
are not read here, and the edit forms say that empty keeps them."""

from __future__ import annotations

import json
from typing import Any

from runwright.model.targets import Credential, Target
from runwright.services.variables import VariableInfo


def _is_plain_text(value: str) -> bool:
    """Text that reads back as the same text: it does not parse as another JSON value
    (``4``, ``true``, ``"quoted"``), since forms.js parses what parses as JSON."""
    try:
        json.loads(value)
    except ValueError:
        return True
    return False


def value_text(value: Any) -> str:
    if isinstance(value, str) and _is_plain_text(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def vars_text(variables: dict[str, Any]) -> str:
    """``key=value`` lines, as the form's vars field takes them; sorted, since
    PostgreSQL (JSONB) does not keep the order they were written in."""
    return "\n".join(f"{key}={value_text(value)}" for key, value in sorted(variables.items()))


def target_values(target: Target) -> dict[str, Any]:
    return {
        "name": target.name,
        "address": target.address,
        "port": str(target.port),
        "driver": target.driver,
        "tags": ", ".join(target.tags),
        "vars": vars_text(target.vars),
        "host_key": target.host_key or "",
        "enabled": target.enabled,
        "description": target.description,
    }


def credential_values(credential: Credential) -> dict[str, Any]:
    return {
        "name": credential.name,
        "username": credential.username,
        "secret_kind": "key" if credential.kind == "key" else "password",
        "priority": str(credential.priority),
        "tags": ", ".join(credential.tags),
        "description": credential.description,
    }


def variable_values(variable: VariableInfo) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": variable.name,
        "job": variable.job or "",
        "sensitive": variable.sensitive,
        "description": variable.description,
        "value": "",
        "as_json": False,
    }
    if not variable.sensitive:
        is_text = isinstance(variable.value, str)
        values["value"] = variable.value if is_text else json.dumps(variable.value, indent=2)
        values["as_json"] = not is_text
    return values

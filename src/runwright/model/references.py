"""``{{ steps.fetch.output.user.id }}`` references in step inputs, rendered by Jinja2's
sandboxed environment.

- An input that is exactly one reference keeps its JSON type (a number stays a
  number, a list a list); anything else renders to a string.
- A missing key fails loudly, naming the reference and the keys that do exist.
- Mapping keys win over Python attributes (``output.items`` is the key ``items``),
  and no attribute of a Python object is reachable: the sandbox refuses
  ``''.__class__`` and friends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from runwright.errors import InvalidRequest

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)
_MAX_RENDERED = 1_000_000  # characters: a reference must not blow up memory
ROOTS = ("steps", "variables", "params", "webhook", "files", "run_id", "job", "job_id")


class ReferenceError_(InvalidRequest):  # noqa: N801 - "ReferenceError" is a builtin
    """A reference that cannot be rendered; the message names it and what exists."""


class _Missing(StrictUndefined):
    """Fails on any use, saying which key was missing and which keys exist."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UndefinedError(describe_missing(self._undefined_obj, self._undefined_name))

    __iter__ = __str__ = __len__ = _fail_with_undefined_error
    __eq__ = __ne__ = __bool__ = __hash__ = _fail_with_undefined_error
    __contains__ = _fail_with_undefined_error


def describe_missing(container: Any, name: Any) -> str:
    if isinstance(container, Mapping):
        keys = ", ".join(sorted(str(k) for k in container)) or "none"
        return f"there is no key {name!r} (the keys there are: {keys})"
    if isinstance(container, list | tuple):
        return f"there is no item {name!r} (the list has {len(container)} items)"
    if container is missing:
        return f"{name!r} is not defined (references start with: {', '.join(ROOTS)})"
    return f"{type(container).__name__} value has no key {name!r}"


class _Environment(SandboxedEnvironment):
    """Keys before attributes; no attributes of Python objects at all; repetition and
    powers bounded so that a reference cannot build gigabytes in the worker."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str):
                raise SecurityError("'%' formatting of text is not allowed; use ~ to join text")
            return left % right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * max(times, 0) > _MAX_RENDERED:
                    raise SecurityError(
                        f"repeating a value {times:,} times would exceed {_MAX_RENDERED:,} items"
                    )
            return left * right
        integers = isinstance(left, int) and isinstance(right, int) and right > 0
        if integers and max(left.bit_length(), 1) * right > 64_000:
            raise SecurityError("the power is too large")
        return left**right

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Undefined):
            return obj  # the first missing key is the one to report
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, list | tuple) and attribute.isdigit():
            return self.getitem(obj, int(attribute))
        if attribute.startswith("_"):
            raise SecurityError(f"access to attribute {attribute!r} is not allowed")
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            return obj  # the first missing key is the one to report
        if isinstance(obj, Mapping):
            if argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        if isinstance(obj, list | tuple) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=str(argument))
        if isinstance(obj, str) and isinstance(argument, int | slice):
            return obj[argument]
        if isinstance(argument, str) and argument.startswith("_"):
            raise SecurityError(f"access to {argument!r} is not allowed")
        return self.undefined(obj=obj, name=argument)

    def call(
        self, __context: Any, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:  # pragma: no cover - exercised through templates
        # Only filters and tests may be called: no methods of values (``"x".format``).
        raise SecurityError("calling functions in a reference is not allowed; use filters")


def _tojson(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), default=str)


def _plain(value: Any) -> Any:
    """Refuse what is not JSON data (a missing key inside a list, a function, a type,
    Jinja's own objects): references produce data, nothing else."""
    if isinstance(value, Undefined):
        str(value)  # raises, naming the missing key
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        for item in value:
            _plain(item)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(key)
            _plain(item)
        return value
    raise SecurityError(
        f"a reference must give data (text, numbers, lists, objects), not {type(value).__name__}"
    )


_environment = _Environment(
    undefined=_Missing, autoescape=False, keep_trailing_newline=True, finalize=_plain
)
_environment.globals.clear()  # no range(), dict(), lipsum(), cycler(), namespace()
_environment.filters["tojson"] = _tojson
# Filters whose size argument could make the worker build gigabytes.
for _name in ("center", "indent", "format", "wordwrap", "batch", "slice"):
    _environment.filters.pop(_name, None)


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    if not old:
        raise SecurityError("replace needs a non-empty text to replace")
    times = text.count(old) if count is None else min(count, text.count(old))
    if len(text) + times * max(0, len(new) - len(old)) > _MAX_RENDERED:
        raise SecurityError(f"replace would give more than {_MAX_RENDERED:,} characters")
    return text.replace(old, new, -1 if count is None else count)


_environment.filters["replace"] = _replace


def has_reference(text: str) -> bool:
    return "{{" in text or "{%" in text


STATEMENTS_REFUSED = (
    "only {% if %} statements are allowed in references (loops and assignments could run "
    "for hours or build gigabytes in the worker): use filters, e.g. "
    "{{ rows | map(attribute='id') | join(',') }}"
)


def _statements_allowed(tree: nodes.Template) -> bool:
    return all(isinstance(node, nodes.Output | nodes.If) for node in tree.find_all(nodes.Stmt))


def check_template(text: str) -> None:
    """Syntax check at deploy time; raises InvalidRequest naming the problem."""
    try:
        if not _statements_allowed(_environment.parse(text)):
            raise InvalidRequest(f"reference {text!r}: {STATEMENTS_REFUSED}")
    except TemplateSyntaxError as exc:
        raise InvalidRequest(f"reference {text!r} is not valid: {exc.message}") from exc


def referenced_steps(text: str) -> set[str]:
    """Step ids a template reads through ``steps.<id>`` or ``steps['<id>']``."""
    try:
        tree = _environment.parse(text)
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == "steps":
                found.add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name):
            key = node.arg
            named = node.node.name == "steps" and isinstance(key, nodes.Const)
            if named and isinstance(key, nodes.Const) and isinstance(key.value, str):
                found.add(key.value)
    return found


def render_value(text: str, scope: dict[str, Any]) -> Any:
    """Render one string: a lone ``{{ expr }}`` keeps its type, else a string."""
    if not has_reference(text):
        return text
    if "{%" in text:
        try:
            allowed = _statements_allowed(_environment.parse(text))
        except TemplateSyntaxError as exc:
            raise ReferenceError_(
                f"reference {text.strip()!r} is not valid: {exc.message}"
            ) from exc
        if not allowed:
            raise ReferenceError_(f"reference {text.strip()!r}: {STATEMENTS_REFUSED}")
    single = _SINGLE.match(text)
    try:
        if single is not None and "{%" not in text:
            expression: Callable[..., Any] = _compile_expression(single.group("expr"))
            value = _plain(expression(**scope))
            size = len(value) if isinstance(value, str) else _size(value)
            if size > _MAX_RENDERED:
                raise ReferenceError_(
                    f"reference {text.strip()!r} gave {size:,} characters of data; the limit "
                    f"is {_MAX_RENDERED:,}"
                )
            return value
        rendered = _template(text).render(**scope)
    except UndefinedError as exc:
        raise ReferenceError_(f"reference {text.strip()!r} failed: {exc.message}") from exc
    except SecurityError as exc:
        raise ReferenceError_(f"reference {text.strip()!r} was refused: {exc}") from exc
    except TemplateSyntaxError as exc:
        raise ReferenceError_(f"reference {text.strip()!r} is not valid: {exc.message}") from exc
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise ReferenceError_(f"reference {text.strip()!r} failed: {exc}") from exc
    if len(rendered) > _MAX_RENDERED:
        raise ReferenceError_(
            f"reference {text.strip()!r} rendered {len(rendered):,} characters; the limit is "
            f"{_MAX_RENDERED:,}"
        )
    return rendered


def _size(value: Any) -> int:
    if isinstance(value, list | tuple | dict):
        import json

        return len(json.dumps(value, default=str))
    return 0


@functools.lru_cache(maxsize=2048)
def _compile_expression(source: str) -> Callable[..., Any]:
    # Every step renders the same few references again: compile each once.
    return _environment.compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=2048)
def _template(text: str) -> Any:
    return _environment.from_string(text)


def render_inputs(value: Any, scope: dict[str, Any], path: str = "with") -> Any:
    """Render every string inside a JSON value; errors name the input's path."""
    if isinstance(value, str):
        try:
            return render_value(value, scope)
        except ReferenceError_ as exc:
            raise ReferenceError_(f"{path}: {exc.message}") from exc
    if isinstance(value, dict):
        return {key: render_inputs(item, scope, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [render_inputs(item, scope, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def evaluate_condition(condition: str, scope: dict[str, Any]) -> bool:
    """``when:``: an expression, with or without ``{{ }}``; its truth decides."""
    text = condition.strip()
    single = _SINGLE.match(text)
    source = single.group("expr") if single else text
    try:
        value = _compile_expression(source)(**scope)
        return bool(value)
    except UndefinedError as exc:
        raise ReferenceError_(f"when {condition!r} failed: {exc.message}") from exc
    except SecurityError as exc:
        raise ReferenceError_(f"when {condition!r} was refused: {exc}") from exc
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise ReferenceError_(f"when {condition!r} failed: {exc}") from exc


def check_condition(condition: str) -> None:
    text = condition.strip()
    single = _SINGLE.match(text)
    source = single.group("expr") if single else text
    try:
        _compile_expression(source)
    except TemplateSyntaxError as exc:
        raise InvalidRequest(f"condition {condition!r} is not valid: {exc.message}") from exc

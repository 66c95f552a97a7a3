"""Custom tools registered from Python, with a JSON schema for their arguments (paper §4.3.5, "zero-shot tool use").

A `ToolRegistry` maps a tool name to a Python callable and its definition (`name`, `description`, `parameters` as a
JSON schema). Before a call runs, `validate_call` checks it against the schema and returns a *structured error* the
agent shows the model (unknown tool, missing required argument, wrong type, unexpected argument), never an
exception that would end the loop. The validator covers the JSON-schema subset tool definitions use: `type`
(string, integer, number, boolean, array, object, null, or a list of them), `properties`, `required`, `enum`,
`items`, `additionalProperties: false`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from minillama.chat_format import tool_error

__all__ = ["ToolRegistry", "schema_errors"]

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
_PY_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def schema_errors(value: Any, schema: dict, path: str = "arguments") -> list[tuple[str, str]]:
    """Every way `value` breaks `schema`, as (kind, message) pairs; [] when it conforms.

    kinds: `wrong_type`, `missing_argument`, `unexpected_argument`, `bad_value`.
    """
    errors: list[tuple[str, str]] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES.get(n, lambda v: True)(value) for n in names):
            errors.append(("wrong_type", f"{path} must be {' or '.join(names)}, got {type(value).__name__} {value!r}"))
            return errors
    if "enum" in schema and value not in schema["enum"]:
        errors.append(("bad_value", f"{path} must be one of {schema['enum']}, got {value!r}"))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(("missing_argument", f"{path}.{name} is required but missing"))
        for name, item in value.items():
            if name in props:
                errors += schema_errors(item, props[name], f"{path}.{name}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(("unexpected_argument", f"{path}.{name} is not a parameter; expected {sorted(props)}"))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def _schema_from_signature(fn: Callable) -> dict:
    """A JSON schema from a function's annotated parameters (str/int/float/bool/list/dict); defaults -> optional."""
    props, required = {}, []
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation
        if isinstance(ann, str):
            ann = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}.get(ann, ann)
        props[name] = {"type": _PY_TYPES.get(ann, "string")}
        if p.default is inspect.Parameter.empty:
            required.append(name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


class ToolRegistry:
    """Name -> (callable, definition). `register` a function; `validate_call` / `call` a parsed tool call."""

    def __init__(self):
        self._tools: dict[str, tuple[Callable, dict]] = {}

    def register(
        self,
        fn: Callable | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict | None = None,
    ):
        """Register `fn` (usable as a decorator). The schema defaults to one read from the annotations."""

        def add(f: Callable) -> Callable:
            tool_name = name or f.__name__
            if not tool_name.isidentifier():
                raise ValueError(
                    f"tool name {tool_name!r} must be a Python identifier (it is written "
                    "<function=NAME> and NAME(...) in calls)"
                )
            schema = parameters if parameters is not None else _schema_from_signature(f)
            if schema.get("type", "object") != "object":
                raise ValueError("a tool's parameters schema must have type 'object' (arguments are keyword arguments)")
            doc = (inspect.getdoc(f) or "").split("\n")[0]
            self._tools[tool_name] = (f, {"name": tool_name, "description": description or doc, "parameters": schema})
            return f

        return add(fn) if fn is not None else add

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self) -> list[dict]:
        """Tool definitions for `prompts.custom_tools_prompt`."""
        return [definition for _, definition in self._tools.values()]

    def definition(self, name: str) -> dict:
        return self._tools[name][1]

    def validate_call(self, call: dict) -> dict | None:
        """None if `call` ({"tool_name", "arguments"}) can run, else a structured error naming what to change."""
        name = call.get("tool_name")
        if name not in self._tools:
            return tool_error(
                "unknown_tool",
                f"there is no tool named {name!r}; available tools: {', '.join(self.names()) or '(none)'}",
                name,
            )
        args = call.get("arguments")
        problems = schema_errors(args, self._tools[name][1]["parameters"])
        if problems:
            kind = problems[0][0]
            return tool_error(kind, f"bad call to {name}: " + "; ".join(m for _, m in problems), name)
        return None

    def call(self, call: dict) -> dict:
        """Validate and run. Returns {"ok": True, "result": ...} or {"ok": False, "error": {...}}; the tool's own
        exception comes back as a `tool_raised` error with its message."""
        error = self.validate_call(call)
        if error is not None:
            return {"ok": False, "error": error}
        fn = self._tools[call["tool_name"]][0]
        try:
            return {"ok": True, "result": fn(**call["arguments"])}
        except Exception as e:  # the tool's failure is the model's information, not the agent's crash
            return {"ok": False, "error": tool_error("tool_raised", f"{type(e).__name__}: {e}", call["tool_name"])}

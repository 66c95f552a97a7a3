"""Custom tools: registration from Python, and argument validation that agrees with the `jsonschema` package."""

import jsonschema
import pytest

from minillama.tooluse.tools.registry import ToolRegistry, schema_errors

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "hours": {"type": "array", "items": {"type": "number"}},
        "verbose": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["city"],
    "additionalProperties": False,
}

CASES = [
    {"city": "Oslo"},
    {"city": "Oslo", "days": 3},
    {},
    {"city": 5},
    {"city": "Oslo", "days": "3"},
    {"city": "Oslo", "days": 2.5},
    {"city": "Oslo", "days": True},
    {"city": "Oslo", "unit": "k"},
    {"city": "Oslo", "hours": [1, 2.5]},
    {"city": "Oslo", "hours": [1, "x"]},
    {"city": "Oslo", "extra": 1},
    {"city": "Oslo", "verbose": 1},
    {"city": "Oslo", "note": None},
    {"city": "Oslo", "note": 3},
    "Oslo",
    ["Oslo"],
    None,
]


@pytest.mark.parametrize("args", CASES)
def test_validation_agrees_with_jsonschema(args):
    valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(args)
    assert (schema_errors(args, SCHEMA) == []) == valid


def test_registry_errors_are_structured():
    reg = ToolRegistry()

    @reg.register
    def get_weather(city: str, days: int = 1) -> dict:
        """Get the weather for a city."""
        if city == "Atlantis":
            raise LookupError("no such city")
        return {"city": city, "days": days}

    assert reg.definition("get_weather")["description"] == "Get the weather for a city."
    assert reg.definition("get_weather")["parameters"]["required"] == ["city"]
    assert reg.call({"tool_name": "get_weather", "arguments": {"city": "Oslo"}}) == {
        "ok": True,
        "result": {"city": "Oslo", "days": 1},
    }
    kinds = {
        "unknown_tool": {"tool_name": "get_wether", "arguments": {"city": "Oslo"}},
        "missing_argument": {"tool_name": "get_weather", "arguments": {}},
        "wrong_type": {"tool_name": "get_weather", "arguments": {"city": "Oslo", "days": "two"}},
        "unexpected_argument": {"tool_name": "get_weather", "arguments": {"city": "Oslo", "when": "now"}},
        "tool_raised": {"tool_name": "get_weather", "arguments": {"city": "Atlantis"}},
    }
    for kind, call in kinds.items():
        out = reg.call(call)
        assert not out["ok"] and out["error"]["type"] == kind and out["error"]["message"], (kind, out)
    assert "get_weather" in reg.call(kinds["unknown_tool"])["error"]["message"]  # lists what exists


def test_register_with_explicit_schema_and_bad_names():
    reg = ToolRegistry()
    reg.register(lambda city: city.upper(), name="shout", description="Upper-case", parameters=SCHEMA)
    assert reg.call({"tool_name": "shout", "arguments": {"city": "oslo"}})["result"] == "OSLO"
    with pytest.raises(ValueError, match="identifier"):
        reg.register(lambda: 1, name="not a name")
    with pytest.raises(ValueError, match="type 'object'"):
        reg.register(lambda: 1, name="f", parameters={"type": "string"})

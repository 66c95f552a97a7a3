"""System prompts and tool instructions of the Llama 3.1 tool-use format (paper §4.3.5).

Built-in tools are switched on in the **system** message; custom tools are described in a separate **user**
message, in the form the answer must take (`json` or `function_tag`). The texts reproduce, character for character,
the prompts Meta's `llama-stack` templates render for Llama 3.1 (checked against the encoded examples in the course
notes: `tests/test_chat_parity.py`). Where Meta's templates have quirks we keep them and say so.

Tool definitions here are plain dicts with a JSON schema for the arguments (the form `ToolRegistry` keeps)::

    {"name": "get_weather", "description": "Get the current weather for a city",
     "parameters": {"type": "object",
                    "properties": {"city": {"type": "string", "description": "City name"}},
                    "required": ["city"]}}
"""

from __future__ import annotations

import datetime as _dt
import json

__all__ = ["builtin_system_prompt", "custom_tools_prompt", "python_list_system_prompt", "KNOWLEDGE_CUTOFF"]

KNOWLEDGE_CUTOFF = "December 2023"

#: JSON-schema type -> the Python type name Meta's `ToolParamDefinition.param_type` uses.
_PARAM_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}

BUILTIN_NAMES = ("brave_search", "wolfram_alpha", "photogen", "code_interpreter")


def _format_date(day: _dt.date | str | None) -> str:
    if day is None:
        day = _dt.date.today()
    if isinstance(day, str):
        return day
    return day.strftime("%d %B %Y")


def builtin_system_prompt(
    builtin_tools=("code_interpreter",), today: _dt.date | str | None = None, instruction: str = ""
) -> str:
    """The system message that turns tools on.

    `Environment: ipython` (for any built-in tool; it also enables the code interpreter), then `Tools: a, b` naming
    the built-ins other than code_interpreter, the knowledge cut-off and today's date (`21 September 2024`), and the
    optional instruction after a blank line::

        Environment: ipython
        Tools: brave_search, wolfram_alpha
        Cutting Knowledge Date: December 2023
        Today Date: 21 September 2024

        You are a helpful assistant.
    """
    unknown = [t for t in builtin_tools if t not in BUILTIN_NAMES]
    if unknown:
        raise ValueError(
            f"unknown built-in tools {unknown}; built-ins are {BUILTIN_NAMES} (register other "
            "functions as custom tools)"
        )
    text = ""
    if builtin_tools:
        named = [t for t in builtin_tools if t != "code_interpreter"]
        # Meta's template: the Tools line has no newline of its own, the bare Environment line does.
        text += "Environment: ipython\n" + (f"Tools: {', '.join(named)}" if named else "") + "\n"
    text += f"Cutting Knowledge Date: {KNOWLEDGE_CUTOFF}\nToday Date: {_format_date(today)}"
    if instruction:
        text += "\n\n" + instruction
    return text + "\n"


def _properties(tool: dict) -> tuple[dict, list]:
    params = tool.get("parameters") or {}
    return params.get("properties", {}), list(params.get("required", []))


def _json_block(tool: dict) -> str:
    """One tool in Meta's JSON listing. Quirk kept: properties are a list of one-key objects, each typed "object"."""
    props, required = _properties(tool)
    items = []
    for name, spec in props.items():
        items.append(
            "                {\n"
            f'                    "{name}": {{\n'
            '                        "type": "object",\n'
            f'                        "description": "{spec.get("description", "")}"\n'
            "                    }\n"
            "                }"
        )
    return (
        "{\n"
        '    "type": "function",\n'
        '    "function": {\n'
        f'        "name": "{tool["name"]}",\n'
        f'        "description": "{tool.get("description", "")}",\n'
        '        "parameters": {\n'
        '            "type": "object",\n'
        '            "properties": [\n' + ",\n".join(items) + "\n"
        "            ],\n"
        f'            "required": {json.dumps(required)}\n'
        "        }\n"
        "    }\n"
        "}"
    )


def _function_tag_block(tool: dict) -> str:
    props, required = _properties(tool)
    params = {
        name: {
            "description": spec.get("description", ""),
            "param_type": spec.get("param_type", _PARAM_TYPES.get(spec.get("type", "string"), "str")),
            "required": name in required,
        }
        for name, spec in props.items()
    }
    desc = tool.get("description", "")
    spec = json.dumps({"name": tool["name"], "description": desc, "parameters": params})
    return f"Use the function '{tool['name']}' to '{desc}':\n{spec}\n"


_FUNCTION_TAG_RULES = """Think very carefully before calling functions.
If you choose to call a function ONLY reply in the following format with no prefix or suffix:

<function=example_function_name>{"example_name": "example_value"}</function>

Reminder:
- If looking for real time information use relevant functions before falling back to brave_search
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Put the entire function call reply on one line"""


def custom_tools_prompt(tools: list[dict], tool_prompt_format: str = "json") -> str:
    """The user message that lists custom tools and says how to call them (`json` or `function_tag`)."""
    if not tools:
        raise ValueError("custom_tools_prompt needs at least one tool definition")
    for tool in tools:
        if not isinstance(tool, dict) or "name" not in tool:
            raise ValueError(f"a tool definition is a dict with 'name', 'description', 'parameters'; got {tool!r}")
    if tool_prompt_format == "json":
        return (
            "Answer the user's question by making use of the following functions if needed.\n"
            "If none of the function can be used, please say so.\n"
            "Here is a list of functions in JSON format:\n"
            + "\n".join(_json_block(t) for t in tools)
            + "\n\nReturn function calls in JSON format."
        )
    if tool_prompt_format == "function_tag":
        return (
            "You have access to the following functions:\n\n"
            + "\n".join(_function_tag_block(t) for t in tools)
            + "\n"
            + _FUNCTION_TAG_RULES
        )
    if tool_prompt_format == "python_list":
        return python_list_system_prompt(tools)
    raise ValueError(f"unknown tool_prompt_format {tool_prompt_format!r}; use 'json', 'function_tag' or 'python_list'")


def python_list_system_prompt(tools: list[dict]) -> str:
    """A Llama 3.2/3.3-style zero-shot prompt asking for `[func(a=1), ...]` answers.

    Our own wording in the spirit of Meta's `PythonListCustomToolGenerator` ("You are an expert in composing
    functions. ..."); it is not pinned token for token like the 3.1 prompts above.
    """
    listing = json.dumps(
        [
            {"name": t["name"], "description": t.get("description", ""), "parameters": t.get("parameters", {})}
            for t in tools
        ],
        indent=4,
    )
    return (
        "You are an expert in composing functions. You are given a question and a set of possible functions.\n"
        "Based on the question, make one or more function calls to achieve the purpose.\n"
        "If none of the functions can be used, say so. If the question lacks required parameters, say so.\n"
        "Answer with function calls only, in the form [func_name1(param1=value1, param2=value2), "
        "func_name2(param=value)], and nothing else.\n\n"
        f"Here is the list of functions in JSON format:\n{listing}\n"
    )

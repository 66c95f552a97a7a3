"""Chapter 12 exercises: the Llama 3.1 tool-use format and one step of an agent (paper §4.3.5).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch12

or run the last cell of notebooks/12_tool_use.ipynb. Use the standard library (json, re, ast) and the tokenizer you
are given; do not import `minillama.chat_format` or `minillama.tooluse.agent` (that is the answer key).
"""

from __future__ import annotations

import json  # noqa: F401
import re  # noqa: F401


def end_token(message: dict) -> str:
    """The token that closes `message`: "<|eom_id|>" for an assistant message whose stop_reason is
    "end_of_message" (it waits for a tool result), "<|eot_id|>" for everything else."""
    # Hints: only the assistant can "end a message" (<|eom_id|>) and wait for a tool; a tool call alone does not
    # decide it (the <function=...> form ends with <|eot_id|>), the stop_reason does.
    raise NotImplementedError("Exercise 12.1: end_token")


def render_message(tokenizer, message: dict, tool_prompt_format: str = "json") -> list[int]:
    """One message -> token ids: header (`tool` written `ipython`), `<|python_tag|>` if the first tool call is
    code_interpreter, the content, each tool call's text, and the end token. Text never becomes special tokens."""
    # Hints:
    # - special ids: tokenizer.special_tokens["<|start_header_id|>"] etc.; text: tokenizer.encode(text, bos=False,
    #   eos=False) (special-token strings inside text stay plain text that way). Do not strip the content.
    # - header = <|start_header_id|> + encode(role) + <|end_header_id|> + encode("\n\n")
    # - tool-call text: brave_search / wolfram_alpha / photogen -> f'{name}.call(query="{query}")';
    #   code_interpreter -> the code itself; custom tools (json) ->
    #   json.dumps({"type": "function", "name": name, "parameters": arguments})
    # - encode the content and each tool call separately (as Meta does), then append end_token(message).
    raise NotImplementedError("Exercise 12.2: render_message")


def parse_json_call(body: str) -> dict | None:
    """A custom tool call in an assistant message body (no header, no end token) -> {"tool_name", "arguments"}.

    Forms: `{"type": "function", "name": ..., "parameters": {...}}` (or any object with a "name") and
    `<function=NAME>{json}</function>`. Returns None when the body is not a call, and {"error": message} when it
    is one of these forms but cannot be read (bad JSON, no "parameters")."""
    # Hints: try the tag first with re.search(r"<function=(?P<name>[^}]+)>(?P<args>{.*?})", body); then
    # json.loads(body) and check it is a dict with type == "function" or a "name". Never let an exception out.
    raise NotImplementedError("Exercise 12.3: parse_json_call")


def parse_builtin_call(body: str) -> dict | None:
    """A built-in tool call in an assistant message body (may start with `<|python_tag|>`, no end token):
    `brave_search.call(query="...")` (or wolfram_alpha, photogen) -> {"tool_name", "arguments": {"query"}}; code
    after `<|python_tag|>` -> {"tool_name": "code_interpreter", "arguments": {"code"}}; anything else -> None."""
    # Hints: remove a leading "<|python_tag|>" but remember it was there; the built-in pattern is
    # r'\b(?P<tool_name>\w+)\.call\(query="(?P<query>[^"]*)"\)'. Text without the tag and without that pattern is
    # an ordinary answer.
    raise NotImplementedError("Exercise 12.4: parse_builtin_call")


def agent_step(model, messages: list[dict], tools: dict) -> list[dict]:
    """One step of the agent loop, appending to `messages` and returning it.

    `model(messages) -> str` gives the raw assistant text (ending in <|eom_id|> or <|eot_id|>). Append the assistant
    message ({"role": "assistant", "content", "tool_calls", "stop_reason"}). For each tool call, run
    `tools[name](**arguments)` and append {"role": "ipython", "content": str(result)}; an unknown tool, bad
    arguments or an exception become {"role": "ipython", "content": "failed\\n[stderr]<message>[/stderr]"}, never
    an exception. A call that could not be parsed also gets such a failed message."""
    # Hints: strip the trailing <|eom_id|>/<|eot_id|> to get the body and the stop_reason ("end_of_message" /
    # "end_of_turn"); parse it with your parse_builtin_call and parse_json_call; when a call is found the content is
    # "". Wrap the tool call in try/except Exception.
    raise NotImplementedError("Exercise 12.5: agent_step")

"""Reference answers for exercises/ch12_tool_use.py: thin wrappers around `minillama.chat_format` (paper §4.3.5)."""

from __future__ import annotations

from minillama.chat_format import BUILTIN_TOOLS, ChatFormat, parse_assistant_text
from minillama.tooluse.format import format_tool_result

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.chat_format", "minillama.tooluse")


def end_token(message: dict) -> str:
    """The token that closes `message`: "<|eom_id|>" for an assistant message whose stop_reason is
    "end_of_message" (it waits for a tool result), "<|eot_id|>" for everything else."""
    eom = message["role"] == "assistant" and message.get("stop_reason") == "end_of_message"
    return "<|eom_id|>" if eom else "<|eot_id|>"


def render_message(tokenizer, message: dict, tool_prompt_format: str = "json") -> list[int]:
    """One message -> token ids: header (`tool` written `ipython`), `<|python_tag|>` if the first tool call is
    code_interpreter, the content, each tool call's text, and the end token. Text never becomes special tokens."""
    return ChatFormat(tokenizer).encode_message(message, tool_prompt_format)[0]


def parse_json_call(body: str) -> dict | None:
    """A custom tool call in an assistant message body (no header, no end token) -> {"tool_name", "arguments"}.

    Forms: `{"type": "function", "name": ..., "parameters": {...}}` (or any object with a "name") and
    `<function=NAME>{json}</function>`. Returns None when the body is not a call, and {"error": message} when it
    is one of these forms but cannot be read (bad JSON, no "parameters")."""
    parsed = parse_assistant_text(body)
    if parsed["error"] is not None and not parsed["tool_calls"]:
        return {"error": parsed["error"]["message"]}
    if parsed["tool_calls"]:
        return parsed["tool_calls"][0]
    return None


def parse_builtin_call(body: str) -> dict | None:
    """A built-in tool call in an assistant message body (may start with `<|python_tag|>`, no end token):
    `brave_search.call(query="...")` (or wolfram_alpha, photogen) -> {"tool_name", "arguments": {"query"}}; code
    after `<|python_tag|>` -> {"tool_name": "code_interpreter", "arguments": {"code"}}; anything else -> None."""
    parsed = parse_assistant_text(body)
    if parsed["tool_calls"] and parsed["tool_calls"][0]["tool_name"] in BUILTIN_TOOLS:
        return parsed["tool_calls"][0]
    return None


def agent_step(model, messages: list[dict], tools: dict) -> list[dict]:
    """One step of the agent loop, appending to `messages` and returning it.

    `model(messages) -> str` gives the raw assistant text (ending in <|eom_id|> or <|eot_id|>). Append the assistant
    message ({"role": "assistant", "content", "tool_calls", "stop_reason"}). For each tool call, run
    `tools[name](**arguments)` and append {"role": "ipython", "content": str(result)}; an unknown tool, bad
    arguments or an exception become {"role": "ipython", "content": "failed\\n[stderr]<message>[/stderr]"}, never
    an exception. A call that could not be parsed also gets such a failed message."""
    parsed = parse_assistant_text(model(messages))
    stop = "end_of_message" if parsed["stop_reason"] == "end_of_message" else "end_of_turn"
    messages.append(
        {"role": "assistant", "content": parsed["content"], "tool_calls": parsed["tool_calls"], "stop_reason": stop}
    )
    if parsed["error"] is not None:
        messages.append({"role": "ipython", "content": format_tool_result("failed", stderr=parsed["error"]["message"])})
        return messages
    for call in parsed["tool_calls"]:
        name = call["tool_name"]
        if name not in tools:
            text = format_tool_result("failed", stderr=f"unknown tool {name!r}; available: {', '.join(tools)}")
        else:
            try:
                text = str(tools[name](**call["arguments"]))
            except Exception as e:  # the model learns from the error; the loop goes on
                text = format_tool_result("failed", stderr=f"{type(e).__name__}: {e}")
        messages.append({"role": "ipython", "content": text})
    return messages

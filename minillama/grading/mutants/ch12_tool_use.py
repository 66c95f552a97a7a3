"""Common mistakes for the chapter 12 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import json

from minillama.chat_format import parse_assistant_text
from minillama.grading.reference import ch12_tool_use as ref


# -- 12.1 end_token
def _eom_when_tool_calls(message):  # decides by the presence of tool calls instead of the stop reason
    return "<|eom_id|>" if message.get("tool_calls") else "<|eot_id|>"


def _eom_any_role(message):  # any message with stop_reason end_of_message ends in eom, not only the assistant's
    return "<|eom_id|>" if message.get("stop_reason") == "end_of_message" else "<|eot_id|>"


# -- 12.2 render_message
def _render(
    tokenizer,
    message,
    tool_prompt_format="json",
    *,
    strip=False,
    tag_always=False,
    allow_special=False,
    keep_tool_role=False,
):
    sp = tokenizer.special_tokens
    role = message["role"]
    if role == "tool" and not keep_tool_role:
        role = "ipython"

    def enc(text):
        if allow_special:
            return tokenizer.encode(text, bos=False, eos=False, allowed_special="all")
        return tokenizer.encode(text, bos=False, eos=False)

    ids = [sp["<|start_header_id|>"], *enc(role), sp["<|end_header_id|>"], *enc("\n\n")]
    calls = message.get("tool_calls") or []
    if calls and (tag_always or calls[0]["tool_name"] == "code_interpreter"):
        ids.append(sp["<|python_tag|>"])
    content = message.get("content", "")
    ids += enc(content.strip() if strip else content)
    for call in calls:
        name, args = call["tool_name"], call["arguments"]
        if name in ("brave_search", "wolfram_alpha", "photogen"):
            text = f'{name}.call(query="{args["query"]}")'
        elif name == "code_interpreter":
            text = args["code"]
        else:
            text = json.dumps({"type": "function", "name": name, "parameters": args})
        ids += enc(text)
    ids.append(sp[ref.end_token(message)])
    return ids


def _render_strips(tokenizer, message, tool_prompt_format="json"):  # Llama 3.0 stripped content; 3.1 does not
    return _render(tokenizer, message, strip=True)


def _render_tag_always(tokenizer, message, tool_prompt_format="json"):  # python_tag before every tool call
    return _render(tokenizer, message, tag_always=True)


def _render_allows_special(tokenizer, message, tool_prompt_format="json"):  # user text can forge control tokens
    return _render(tokenizer, message, allow_special=True)


def _render_tool_role(tokenizer, message, tool_prompt_format="json"):  # writes "tool" instead of "ipython"
    return _render(tokenizer, message, keep_tool_role=True)


# -- 12.3 parse_json_call
def _json_whole_object(body):  # returns the whole JSON object as the arguments, not its "parameters"
    out = ref.parse_json_call(body)
    if out and "tool_name" in out and body.lstrip().startswith("{"):
        return {"tool_name": out["tool_name"], "arguments": json.loads(body)}
    return out


def _json_raises(body):  # lets json.loads' exception escape on a malformed call
    if "<function=" in body:
        start = body.index(">") + 1
        json.loads(body[start : body.index("</function>")])
    return ref.parse_json_call(body)


def _json_no_function_tag(body):  # only knows the JSON form, not <function=...>
    if "<function=" in body:
        return None
    return ref.parse_json_call(body)


# -- 12.4 parse_builtin_call
def _builtin_keeps_tag(body):  # forgets to remove <|python_tag|> from the code
    out = ref.parse_builtin_call(body)
    if out and out["tool_name"] == "code_interpreter":
        return {"tool_name": "code_interpreter", "arguments": {"code": body}}
    return out


def _builtin_everything_is_code(body):  # treats any message as code, with or without <|python_tag|>
    out = ref.parse_builtin_call(body)
    return out or {"tool_name": "code_interpreter", "arguments": {"code": body.replace("<|python_tag|>", "")}}


def _builtin_ignores_tag_calls(body):  # checks for code before the .call( pattern, so tagged searches become code
    if body.startswith("<|python_tag|>"):
        return {"tool_name": "code_interpreter", "arguments": {"code": body[len("<|python_tag|>") :]}}
    return ref.parse_builtin_call(body)


# -- 12.5 agent_step
def _step_no_result(model, messages, tools):  # runs the tool but never appends the ipython message
    ref.agent_step(model, messages, tools)
    while messages and messages[-1]["role"] == "ipython":
        messages.pop()
    return messages


def _step_exception_escapes(model, messages, tools):  # no try/except: a failing tool kills the loop
    parsed = parse_assistant_text(model(messages))
    messages.append(
        {
            "role": "assistant",
            "content": parsed["content"],
            "tool_calls": parsed["tool_calls"],
            "stop_reason": parsed["stop_reason"],
        }
    )
    for call in parsed["tool_calls"]:
        messages.append({"role": "ipython", "content": str(tools[call["tool_name"]](**call["arguments"]))})
    return messages


def _step_error_as_success(model, messages, tools):  # reports errors without the "failed" status
    ref.agent_step(model, messages, tools)
    last = messages[-1]
    if last["role"] == "ipython" and last["content"].startswith("failed\n"):
        last["content"] = last["content"][len("failed\n") :]
    return messages


def _step_wrong_stop_reason(model, messages, tools):  # records every assistant message as end_of_turn
    ref.agent_step(model, messages, tools)
    for m in messages:
        if m["role"] == "assistant":
            m["stop_reason"] = "end_of_turn"
    return messages


MUTANTS = {
    "eom-when-tool-calls": {"end_token": _eom_when_tool_calls},
    "eom-any-role": {"end_token": _eom_any_role},
    "render-strips-content": {"render_message": _render_strips},
    "render-python-tag-always": {"render_message": _render_tag_always},
    "render-special-text-allowed": {"render_message": _render_allows_special},
    "render-tool-role-not-renamed": {"render_message": _render_tool_role},
    "json-whole-object-as-arguments": {"parse_json_call": _json_whole_object},
    "json-exception-escapes": {"parse_json_call": _json_raises},
    "json-no-function-tag": {"parse_json_call": _json_no_function_tag},
    "builtin-keeps-python-tag": {"parse_builtin_call": _builtin_keeps_tag},
    "builtin-everything-is-code": {"parse_builtin_call": _builtin_everything_is_code},
    "builtin-tagged-search-becomes-code": {"parse_builtin_call": _builtin_ignores_tag_calls},
    "step-no-tool-result": {"agent_step": _step_no_result},
    "step-exception-escapes": {"agent_step": _step_exception_escapes},
    "step-error-without-failed": {"agent_step": _step_error_as_success},
    "step-wrong-stop-reason": {"agent_step": _step_wrong_stop_reason},
}

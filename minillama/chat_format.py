"""The Llama 3.1 chat and tool-call format: dialogs to token ids, generated text back to tool calls.

Paper: §4.1.1 (chat dialog format) and §4.3.5 (tool use: the `ipython` role,
`<|python_tag|>`, `<|eom_id|>`). The rules follow Meta's `llama_models.llama3.chat_format.ChatFormat` (llama-models
0.3.0) token for token; `tests/test_chat_parity.py` checks that on many dialogs.

A dialog renders as::

    <|begin_of_text|>
    <|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>        (one block per message)
    ...
    <|start_header_id|>assistant<|end_header_id|>\\n\\n                         (the generation prompt)

- role `tool` is written `ipython` (a tool result);
- an assistant message ends with `<|eom_id|>` when it waits for a tool (`stop_reason="end_of_message"`), otherwise
  every message ends with `<|eot_id|>`;
- `<|python_tag|>` opens an assistant message only when its first tool call is `code_interpreter`;
- content is *not* stripped, and every piece of text (content, each tool call, a user's `context`) is tokenised on
  its own, so token boundaries never cross pieces;
- text is always tokenised with no special tokens allowed: `"<|eot_id|>"` typed by a user or printed by a tool
  becomes 7 ordinary tokens, never a control token.

Messages are plain dicts::

    {"role": "system" | "user" | "assistant" | "ipython" | "tool",
     "content": str (or a list of str),
     "tool_calls": [{"tool_name": "wolfram_alpha", "arguments": {"query": "2+2"}}],   # assistant only, optional
     "stop_reason": "end_of_turn" | "end_of_message",                                  # assistant only, optional
     "context": str}                                                                    # user only, optional (RAG)

The tokenizer is duck-typed: anything with `encode(text, bos=, eos=, allowed_special=, disallowed_special=)`,
`decode(ids)` and a `special_tokens` dict carrying the Llama 3 special-token strings (the real 128K tokenizer, the
course's small BPE, or `llama_models`' own `Tokenizer`).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

__all__ = [
    "BUILTIN_TOOLS",
    "ROLES",
    "ChatFormat",
    "encode_tool_call",
    "parse_assistant_text",
    "tool_error",
]

#: Meta's `BuiltinTool` names. `code_interpreter` calls are raw Python after `<|python_tag|>`; the others are
#: written `name.call(query="...")`.
BUILTIN_TOOLS = ("brave_search", "wolfram_alpha", "photogen", "code_interpreter")

#: Roles as written in a header. `tool` is accepted as a synonym of `ipython`.
ROLES = ("system", "user", "assistant", "ipython")

STOP_REASONS = ("end_of_turn", "end_of_message", "out_of_tokens")
TOOL_PROMPT_FORMATS = ("json", "function_tag", "python_list")

BOT, EOT, EOM = "<|begin_of_text|>", "<|eot_id|>", "<|eom_id|>"
START_HEADER, END_HEADER, PYTHON_TAG = "<|start_header_id|>", "<|end_header_id|>", "<|python_tag|>"

# The two regular expressions of Meta's `tool_utils.py` (same patterns, so the same strings parse the same way).
BUILTIN_CALL_RE = re.compile(r'\b(?P<tool_name>\w+)\.call\(query="(?P<query>[^"]*)"\)')
FUNCTION_TAG_RE = re.compile(r"<function=(?P<function_name>[^}]+)>(?P<args>{.*?})")


# ----------------------------------------------------------------------------------------------------------------
# Tool calls and tool results as text
# ----------------------------------------------------------------------------------------------------------------
def _python_literal(value: Any) -> str:
    """How Meta's `python_list` format writes one argument value (strings in double quotes, not escaped)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (bool, int, float)) or value is None:
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_python_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(
        f"cannot write a {type(value).__name__} argument in python_list format; use str/int/float/bool/None/list/dict"
    )


def encode_tool_call(call: dict, tool_prompt_format: str = "json") -> str:
    """The text an assistant writes for one tool call.

    Built-in tools: `brave_search.call(query="...")` (same for wolfram_alpha, photogen), code_interpreter: the raw
    code. Custom tools depend on `tool_prompt_format`: `json` -> `{"type": "function", "name": ..., "parameters":
    ...}`, `function_tag` -> `<function=name>{json}</function>`, `python_list` -> `[name(k="v", n=3)]`.
    """
    name, args = call["tool_name"], call.get("arguments", {})
    if name in ("brave_search", "wolfram_alpha", "photogen"):
        return f'{name}.call(query="{args["query"]}")'
    if name == "code_interpreter":
        return args["code"]
    if tool_prompt_format == "json":
        return json.dumps({"type": "function", "name": name, "parameters": args})
    if tool_prompt_format == "function_tag":
        return f"<function={name}>{json.dumps(args)}</function>"
    if tool_prompt_format == "python_list":
        return "[" + name + "(" + ", ".join(f"{k}={_python_literal(v)}" for k, v in args.items()) + ")]"
    raise ValueError(f"unknown tool_prompt_format {tool_prompt_format!r}; use one of {TOOL_PROMPT_FORMATS}")


# ----------------------------------------------------------------------------------------------------------------
# Parsing generated text
# ----------------------------------------------------------------------------------------------------------------
def tool_error(kind: str, message: str, tool_name: str | None = None) -> dict:
    """The structured error every tool-use step reports (a parse failure here, a bad call in the registry, a
    calculator or sandbox failure): `{"type": kind, "tool_name": ..., "message": ...}`."""
    return {"type": kind, "tool_name": tool_name, "message": message}


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _python_list_calls(text: str) -> list[ast.Call] | None:
    """The calls of `[f(a=1), g(b="x")]` when `text` is exactly such a list (keyword arguments only), else None."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    node = tree.body[0].value
    if not isinstance(node, ast.List) or not node.elts:
        return None
    for call in node.elts:
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)) or call.args:
            return None
    return list(node.elts)


def _custom_call(body: str) -> tuple[str, Any, dict | None] | None:
    """Try the three custom-tool forms in Meta's order. Returns (name, arguments, error) or None if none applies.

    `arguments` is None (and `error` set) when the form was recognised but its arguments could not be read; `name`
    is None too when the caller should still try the built-in forms (a `<function=...>` tag with bad JSON).
    """
    match = FUNCTION_TAG_RE.search(body)
    if match:
        name, raw = match.group("function_name"), match.group("args")
        try:
            return name, json.loads(raw.replace("'", '"')), None  # Meta also swaps ' for "
        except json.JSONDecodeError as e:
            # Meta gives up on the custom form here and tries the built-in forms next; so do we (name None).
            return (
                None,
                None,
                tool_error(
                    "bad_json",
                    f"the arguments of <function={name}> are not valid JSON ({e.msg} at column {e.colno}): "
                    f"{raw!r}; write them as one JSON object with double-quoted keys",
                    name,
                ),
            )
    if _is_json_object(body):
        obj = json.loads(body)
        if obj.get("type") == "function" or "name" in obj:
            if "name" not in obj or "parameters" not in obj:
                missing = "name" if "name" not in obj else "parameters"
                return (
                    obj.get("name"),
                    None,
                    tool_error(
                        "bad_call",
                        f'a JSON tool call needs a "{missing}" key: '
                        '{"type": "function", "name": ..., "parameters": {...}}',
                        obj.get("name"),
                    ),
                )
            return obj["name"], obj["parameters"], None
        return None
    calls = _python_list_calls(body)
    if calls is not None:
        call = calls[0]  # like Meta: only the first call of the list is kept
        args = {}
        for kw in call.keywords:
            try:
                args[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                return (
                    call.func.id,
                    None,
                    tool_error(
                        "bad_call",
                        f"argument {kw.arg!r} of {call.func.id}(...) is not a literal value; pass "
                        "numbers, strings, lists or dicts written out in full",
                        call.func.id,
                    ),
                )
        return call.func.id, args, None
    return None


def parse_assistant_text(text: str, stop_reason: str = "out_of_tokens") -> dict:
    """Split a generated assistant message into content, stop reason and tool calls (Meta's decoding order).

    1. strip spaces, the assistant header if present, and a leading `<|python_tag|>` (remembered);
    2. a trailing `<|eot_id|>` means end_of_turn, `<|eom_id|>` end_of_message (else `stop_reason` is kept);
    3. custom calls: `<function=name>{json}</function>`, a whole-body JSON object with `"type": "function"` or a
       `"name"`, or a Python list of keyword-only calls (first call kept); a custom call named like a built-in tool
       becomes `{"query": first argument}`;
    4. otherwise a built-in call `name.call(query="...")`;
    5. otherwise, after `<|python_tag|>`, the whole body is code for `code_interpreter`.
    When a call is found, `content` is "".

    Returns `{"content", "stop_reason", "tool_calls": [{"tool_name", "arguments"}], "error"}`. `error` is None, or
    a dict `{"type", "tool_name", "message"}` when a call was attempted but could not be read (bad JSON, a JSON
    call without name/parameters, a non-literal Python argument). Nothing here raises on model output.
    """
    if stop_reason not in STOP_REASONS:
        raise ValueError(f"stop_reason must be one of {STOP_REASONS}, got {stop_reason!r}")
    body = text.strip(" ")
    header = f"{START_HEADER}assistant{END_HEADER}\n\n"
    if body.startswith(header):
        body = body[len(header) :]
    ipython = body.startswith(PYTHON_TAG)
    if ipython:
        body = body[len(PYTHON_TAG) :]
    if body.endswith(EOT):
        body, stop_reason = body[: -len(EOT)], "end_of_turn"
    elif body.endswith(EOM):
        body, stop_reason = body[: -len(EOM)], "end_of_message"

    name, args, error = None, None, None
    custom = _custom_call(body)
    if custom is None or custom[0] is None and custom[2]["type"] == "bad_json":
        error = custom[2] if custom else None
        match = BUILTIN_CALL_RE.search(body)
        if match:
            name, args, error = match.group("tool_name"), {"query": match.group("query")}, None
        elif ipython:
            name, args, error = "code_interpreter", {"code": body}, None
    else:
        name, args, error = custom
        if args is not None and name in BUILTIN_TOOLS:
            values = list(args.values()) if isinstance(args, dict) else []
            if values:
                args = {"query": values[0]}
            else:
                args, error = None, tool_error("missing_argument", f"{name} needs a query argument", name)

    tool_calls = []
    if name is not None and args is not None:
        if not isinstance(args, dict):
            error = tool_error(
                "bad_call", f"the arguments of {name} must be a JSON object, got {type(args).__name__}", name
            )
        tool_calls.append({"tool_name": name, "arguments": args})
        body = ""
    return {"content": body, "stop_reason": stop_reason, "tool_calls": tool_calls, "error": error}


# ----------------------------------------------------------------------------------------------------------------
# The formatter
# ----------------------------------------------------------------------------------------------------------------
class ChatFormat:
    """Render dialogs for a Llama 3 tokenizer and read assistant output back (see the module docstring).

    `encode_dialog_prompt(messages)` -> token ids for generation; `encode_dialog_with_roles(messages)` -> the same ids
    plus, per token, which part of the dialog it belongs to (for post-training loss masks);
    `decode_assistant_message(text_or_ids)` -> `{"content", "stop_reason", "tool_calls", "error"}`.
    """

    def __init__(self, tokenizer):
        special = getattr(tokenizer, "special_tokens", None)
        needed = (BOT, START_HEADER, END_HEADER, EOT, EOM, PYTHON_TAG)
        if not isinstance(special, dict) or any(s not in special for s in needed):
            raise ValueError(
                "ChatFormat needs a tokenizer whose `special_tokens` dict holds the Llama 3 special "
                f"tokens {needed}; use minillama.tokenizer.Llama3Tokenizer or the course BPETokenizer"
            )
        self.tokenizer = tokenizer
        self.special = {s: special[s] for s in needed}
        self.bos_id, self.eot_id, self.eom_id = special[BOT], special[EOT], special[EOM]
        self.python_tag_id = special[PYTHON_TAG]
        self.start_header_id, self.end_header_id = special[START_HEADER], special[END_HEADER]

    # -- text ------------------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Ordinary text to ids. Special-token strings inside `text` stay plain text (never control tokens)."""
        return self.tokenizer.encode(text, bos=False, eos=False, allowed_special=frozenset(), disallowed_special=())

    def encode_header(self, role: str) -> list[int]:
        """`<|start_header_id|>{role}<|end_header_id|>\\n\\n` as ids (`tool` is written `ipython`)."""
        role = self._role(role)
        return [self.start_header_id, *self.encode_text(role), self.end_header_id, *self.encode_text("\n\n")]

    @staticmethod
    def _role(role: str) -> str:
        if role == "tool":
            return "ipython"
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {ROLES} (or 'tool' for ipython)")
        return role

    # -- messages --------------------------------------------------------------------------------------------
    def encode_message_parts(self, message: dict, tool_prompt_format: str = "json") -> list[tuple[str, list[int]]]:
        """One message as labelled pieces: [("header", ids), ("content", ids), ..., ("end", [eot or eom])].

        Labels: `header` (the role header), `python_tag`, `content` (message text, a tool call, a user's context),
        `end` (the closing `<|eot_id|>`/`<|eom_id|>`).
        """
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"a message is a dict with at least 'role' and 'content', got {message!r}")
        role = self._role(message["role"])
        tool_calls = list(message.get("tool_calls") or [])
        stop_reason = message.get("stop_reason")
        if stop_reason is not None and stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason must be one of {STOP_REASONS} or absent, got {stop_reason!r}")
        if tool_calls and role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls (got them on a {role!r} message)")
        for call in tool_calls:
            if not isinstance(call, dict) or "tool_name" not in call:
                raise ValueError(f"a tool call is a dict {{'tool_name': ..., 'arguments': {{...}}}}, got {call!r}")

        parts: list[tuple[str, list[int]]] = [("header", self.encode_header(role))]
        if role == "assistant" and tool_calls and tool_calls[0]["tool_name"] == "code_interpreter":
            parts.append(("python_tag", [self.python_tag_id]))
        content = message.get("content", "")
        for piece in content if isinstance(content, list) else [content]:
            if not isinstance(piece, str):
                raise ValueError(f"message content must be a string or a list of strings, got {type(piece)}")
            parts.append(("content", self.encode_text(piece)))
        if role == "user" and message.get("context") is not None:
            parts.append(("content", self.encode_text("\n\n")))
            parts.append(("content", self.encode_text(message["context"])))
        for call in tool_calls:
            parts.append(("content", self.encode_text(encode_tool_call(call, tool_prompt_format))))
        eom = role == "assistant" and stop_reason == "end_of_message"
        parts.append(("end", [self.eom_id if eom else self.eot_id]))
        return parts

    def encode_message(self, message: dict, tool_prompt_format: str = "json") -> tuple[list[int], list[str]]:
        """One message -> (token ids, one label per token from `encode_message_parts`)."""
        tokens: list[int] = []
        labels: list[str] = []
        for label, ids in self.encode_message_parts(message, tool_prompt_format):
            tokens += ids
            labels += [label] * len(ids)
        return tokens, labels

    # -- dialogs ---------------------------------------------------------------------------------------------
    def encode_dialog_prompt(
        self, messages: list[dict], tool_prompt_format: str = "json", add_generation_prompt: bool = True
    ) -> list[int]:
        """`<|begin_of_text|>`, every message, then the assistant header the model completes."""
        return self.encode_dialog_with_roles(messages, tool_prompt_format, add_generation_prompt)[0]

    def encode_dialog_with_roles(
        self, messages: list[dict], tool_prompt_format: str = "json", add_generation_prompt: bool = False
    ) -> tuple[list[int], list[str]]:
        """Token ids of a dialog and, per token, the role whose *output* it is, for post-training loss masks.

        Each token is labelled with its message's role (`system`, `user`, `assistant`, `ipython`) when it is that
        message's content, its `<|python_tag|>` or its closing `<|eot_id|>`/`<|eom_id|>`; `<|begin_of_text|>` and
        every header are labelled `format`. So `[r == "assistant" for r in roles]` is the SFT loss mask: the
        model learns the assistant's words, tool calls and when to stop (eom vs eot), never the prompt.
        Defaults to no trailing generation header (a finished training dialog); pass True to add it.
        """
        if isinstance(messages, dict) or not all(isinstance(m, dict) for m in messages):
            raise ValueError("messages must be a list of dicts like {'role': 'user', 'content': '...'}")
        tokens, roles = [self.bos_id], ["format"]
        for message in messages:
            role = self._role(message.get("role", "?")) if isinstance(message, dict) else None
            for label, ids in self.encode_message_parts(message, tool_prompt_format):
                tokens += ids
                roles += ["format" if label == "header" else role] * len(ids)
        if add_generation_prompt:
            header = self.encode_header("assistant")
            tokens += header
            roles += ["format"] * len(header)
        return tokens, roles

    # -- decoding --------------------------------------------------------------------------------------------
    def decode_assistant_message(self, text, stop_reason: str = "out_of_tokens") -> dict:
        """Generated assistant output (text, or token ids decoded first) -> `{"content", "stop_reason",
        "tool_calls", "error"}`; see `parse_assistant_text`."""
        if not isinstance(text, str):
            text = self.tokenizer.decode(list(text))
        return parse_assistant_text(text, stop_reason)

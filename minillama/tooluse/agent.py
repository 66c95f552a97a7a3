"""The tool-use agent loop: generate, parse, run the tool, append the result, repeat (paper §4.3.5).

Llama 3 is trained on dialogs where the assistant may answer, or stop with `<|eom_id|>` after a tool call, read
the tool's output in an `ipython` message and continue, possibly over several calls, until it ends its turn with
`<|eot_id|>`. `Agent.run` does exactly that:

    while steps < max_steps:
        text   = model(messages)                       # one assistant message, ending in <|eot_id|> or <|eom_id|>
        parsed = ChatFormat.decode_assistant_message(text)
        append the assistant message
        if it called tools (or tried and failed): run / validate each, append an ipython message, continue
        elif it ended its turn: done
    -> stop reason "answered" or "step_limit"

Errors never end the loop: bad JSON, an unknown tool, a missing or mistyped argument, code that raises or breaks a
sandbox limit all come back to the model as a `failed` ipython message it can react to (the CSV example: the first
script fails, the model reads the traceback and fixes it).

A *model* is any callable `messages -> text`: a `ScriptedModel` (replies written in advance, or functions of the
dialog) for demos and tests, or `TransformerModel` (our `Transformer` + `minillama.generate`).
`minillama chat` (`minillama.cli.chat`) runs the scripted CSV demo (`minillama.tooluse.demo`) or a trained checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from minillama.chat_format import ChatFormat, encode_tool_call, parse_assistant_text, tool_error
from minillama.generate import generate
from minillama.tooluse.format import format_tool_result
from minillama.tooluse.prompts import custom_tools_prompt
from minillama.tooluse.toolbox import Toolbox

__all__ = ["Agent", "AgentResult", "ScriptedModel", "TransformerModel", "format_transcript"]


# ----------------------------------------------------------------------------------------------------------------
# Tools
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------
class ScriptedModel:
    """Replies prepared in advance, for demos and tests: each is a string (the raw assistant text, ending in
    `<|eom_id|>`/`<|eot_id|>`) or a function `messages -> string` (to answer from what a tool printed)."""

    def __init__(self, replies: list):
        self.replies = list(replies)
        self.calls = 0

    def __call__(self, messages: list[dict]) -> str:
        if self.calls >= len(self.replies):
            return "I have nothing more to add.<|eot_id|>"
        reply = self.replies[self.calls]
        self.calls += 1
        return reply(messages) if callable(reply) else reply


class TransformerModel:
    """Our `Transformer` as an agent model: encode the dialog, generate until `<|eot_id|>`/`<|eom_id|>`, and
    return the text with the stop token that ended it written out (so the parser sees the same string Meta's would:
    eom means the model waits for a tool, eot that it is done)."""

    def __init__(
        self,
        model,
        chat_format: ChatFormat,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        tool_prompt_format: str = "json",
        seed: int | None = None,
    ):
        self.model, self.chat_format = model, chat_format
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.tool_prompt_format = tool_prompt_format

    def __call__(self, messages: list[dict]) -> str:
        cf = self.chat_format
        prompt = cf.encode_dialog_prompt(messages, tool_prompt_format=self.tool_prompt_format)
        limit = getattr(self.model.args, "max_seq_len", None)
        budget = self.max_new_tokens if limit is None else max(0, min(self.max_new_tokens, limit - len(prompt)))
        if budget == 0:
            return ""  # no room left: parsed as out_of_tokens with empty content
        was_training = self.model.training
        self.model.eval()
        new, ended_by = generate(
            self.model,
            [prompt],
            budget,
            temperature=self.temperature,
            stop_tokens=(cf.eot_id, cf.eom_id),
            seed=self.seed,
            return_stop=True,
        )
        self.model.train(was_training)
        return cf.tokenizer.decode(new[0] + ([ended_by[0]] if ended_by[0] is not None else []))


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class AgentResult:
    """A finished run: the whole dialog, the final answer, why it stopped, and one record per step."""

    messages: list[dict]
    answer: str
    stop: str  # "answered" | "step_limit"
    steps: list[dict] = field(default_factory=list)

    @property
    def tool_calls(self) -> list[dict]:
        return [c for s in self.steps for c in s["tool_calls"]]


class Agent:
    """Run a model with tools until it ends its turn or `max_steps` model calls have been made."""

    def __init__(self, model: Callable[[list[dict]], str], toolbox: Toolbox | None = None, max_steps: int = 6):
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self.model, self.toolbox, self.max_steps = model, toolbox or Toolbox(), max_steps

    def start(self, user: str, system: str | None = None, custom_tools_format: str = "json") -> list[dict]:
        """The opening messages: the tools system prompt, custom tool instructions (if any), the user's request."""
        messages = [{"role": "system", "content": system if system is not None else self.toolbox.system_prompt()}]
        if self.toolbox.registry.names():
            messages.append(
                {
                    "role": "user",
                    "content": custom_tools_prompt(self.toolbox.registry.definitions(), custom_tools_format),
                }
            )
        messages.append({"role": "user", "content": user})
        return messages

    def step(self, messages: list[dict]) -> dict:
        """One model call and its tool calls; appends to `messages`. Returns the step record ("done" when the
        assistant ended its turn without a tool call)."""
        text = self.model(messages)
        parsed = parse_assistant_text(text)
        assistant = {
            "role": "assistant",
            "content": parsed["content"],
            "tool_calls": parsed["tool_calls"],
            "stop_reason": "end_of_message" if parsed["stop_reason"] == "end_of_message" else "end_of_turn",
        }
        messages.append(assistant)
        record = {
            "text": text,
            "tool_calls": parsed["tool_calls"],
            "results": [],
            "error": parsed["error"],
            "done": False,
        }
        if parsed["error"] is not None and not parsed["tool_calls"]:
            body = format_tool_result("failed", stderr="Could not read the tool call: " + parsed["error"]["message"])
            messages.append({"role": "ipython", "content": body})
            record["results"].append({"ok": False, "content": body, "error": parsed["error"]})
        elif parsed["tool_calls"]:
            for call in parsed["tool_calls"]:
                if parsed["error"] is not None:  # recognised but unusable arguments
                    out = {
                        "ok": False,
                        "content": format_tool_result("failed", stderr=parsed["error"]["message"]),
                        "error": parsed["error"],
                    }
                else:
                    out = self.toolbox.execute(call)
                messages.append({"role": "ipython", "content": out["content"]})
                record["results"].append(out)
        elif parsed["stop_reason"] == "end_of_message":
            body = format_tool_result(
                "failed",
                stderr="You ended the message with <|eom_id|> but made no tool "
                "call; call a tool or end your turn with <|eot_id|>.",
            )
            messages.append({"role": "ipython", "content": body})
            record["results"].append({"ok": False, "content": body, "error": tool_error("no_call", body)})
        else:
            record["done"] = True
        return record

    def run(self, user: str | list[dict], **start_kwargs) -> AgentResult:
        """Run on a request (a string, or the full opening messages)."""
        messages = self.start(user, **start_kwargs) if isinstance(user, str) else list(user)
        steps = []
        for _ in range(self.max_steps):
            record = self.step(messages)
            steps.append(record)
            if record["done"]:
                return AgentResult(messages, messages[-1]["content"], "answered", steps)
        return AgentResult(
            messages, messages[-1]["content"] if messages[-1]["role"] == "assistant" else "", "step_limit", steps
        )


# ----------------------------------------------------------------------------------------------------------------
# Showing a run
# ----------------------------------------------------------------------------------------------------------------
def format_transcript(messages: list[dict], skip_system: bool = True, width: int = 1500) -> str:
    """A readable transcript: one block per message, tool calls written as the model wrote them."""
    lines = []
    for m in messages:
        role = "ipython" if m["role"] == "tool" else m["role"]
        if skip_system and role == "system":
            continue
        body = m.get("content", "")
        if isinstance(body, list):
            body = "".join(body)
        for call in m.get("tool_calls") or []:
            prefix = "<|python_tag|>" if call["tool_name"] == "code_interpreter" else ""
            body += ("\n" if body else "") + prefix + encode_tool_call(call)
        if m.get("stop_reason") == "end_of_message":
            body += "  <|eom_id|>"
        if len(body) > width:
            body = body[:width] + f" ... [{len(body) - width} more characters]"
        lines.append(f"[{role}]\n{body}")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# The running example: a CSV analysis where the first script fails
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# CLI: minillama chat
# ----------------------------------------------------------------------------------------------------------------

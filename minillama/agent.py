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
`minillama chat` (`main`) runs the scripted CSV demo or a trained checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Callable

from minillama.chat import BUILTIN_TOOLS, ChatFormat, format_tool_result, parse_assistant_text
from minillama.tools.prompts import builtin_system_prompt, custom_tools_prompt
from minillama.tools.registry import ToolRegistry, tool_error

__all__ = ["Agent", "AgentResult", "ScriptedModel", "Toolbox", "TransformerModel", "csv_demo", "format_transcript",
           "main"]


# ----------------------------------------------------------------------------------------------------------------
# Tools
# ----------------------------------------------------------------------------------------------------------------
class Toolbox:
    """Dispatches parsed tool calls: built-ins to the sandbox / calculator / local search, others to a registry.

    `builtin`: the built-in tools switched on (the system prompt lists them); `registry`: custom functions;
    `sandbox_kwargs`: limits for the code interpreter (`minillama.tools.sandbox.Sandbox`), whose working directory
    lives as long as the toolbox (files persist between calls within one run, like a notebook kernel's folder).
    Without OS isolation (bubblewrap or Linux namespaces) the sandbox refuses model-written code and each call
    returns that refusal as a `failed` message, unless `allow_weak_isolation=True` is passed.
    """

    def __init__(self, builtin=("code_interpreter", "wolfram_alpha", "brave_search"),
                 registry: ToolRegistry | None = None, files: dict | None = None, **sandbox_kwargs):
        unknown = [t for t in builtin if t not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"unknown built-in tools {unknown}; choose from {BUILTIN_TOOLS}")
        self.builtin = tuple(builtin)
        self.registry = registry or ToolRegistry()
        self.files = dict(files or {})
        self.sandbox_kwargs = {"timeout_s": 10, "memory_mb": 1024, **sandbox_kwargs}
        self._sandbox = None

    @property
    def sandbox(self):
        if self._sandbox is None:
            from minillama.tools.sandbox import Sandbox

            self._sandbox = Sandbox(files=self.files, **self.sandbox_kwargs)
        return self._sandbox

    def close(self):
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def system_prompt(self, today=None, instruction: str = "") -> str:
        return builtin_system_prompt(self.builtin, today, instruction)

    def validate(self, call: dict) -> dict | None:
        """A structured error if the call cannot run (tool not enabled/unknown, bad arguments), else None."""
        name, args = call.get("tool_name"), call.get("arguments")
        if name in BUILTIN_TOOLS:
            if name not in self.builtin:
                return tool_error("unknown_tool", f"the built-in tool {name} is not enabled here; enabled: "
                                                  f"{', '.join(self.builtin + tuple(self.registry.names()))}", name)
            key = "code" if name == "code_interpreter" else "query"
            if not isinstance(args, dict) or not isinstance(args.get(key), str):
                return tool_error("missing_argument", f"{name} needs a string argument {key!r}", name)
            return None
        if name not in self.registry:
            enabled = ", ".join(self.builtin + tuple(self.registry.names()))
            return tool_error("unknown_tool", f"there is no tool named {name!r}; available tools: {enabled}", name)
        return self.registry.validate_call(call)

    def execute(self, call: dict) -> dict:
        """Run one call: {"ok": bool, "content": text of the ipython message, "error": dict | None}."""
        error = self.validate(call)
        if error is not None:
            return {"ok": False, "content": format_tool_result("failed", stderr=error["message"]), "error": error}
        name, args = call["tool_name"], call["arguments"]
        if name == "code_interpreter":
            from minillama.tools.sandbox import SandboxRefused

            try:
                sandbox = self.sandbox
            except SandboxRefused as exc:  # no OS isolation here and no opt-in: the model reads why
                return {"ok": False, "content": format_tool_result("failed", stderr=str(exc)),
                        "error": tool_error("sandbox_refused", str(exc), name)}
            result = sandbox.run(args["code"])
            content = result.as_tool_message(format_tool_result)
            return {"ok": result.ok, "content": content, "error": None if result.ok else
                    tool_error("code_failed", result.message or "the code raised an exception", name)}
        if name == "wolfram_alpha":
            from minillama.tools.calculator import calculate

            out = calculate(args["query"])
            if out["ok"]:
                return {"ok": True, "content": out["result"], "error": None}
            return {"ok": False, "content": format_tool_result("failed", stderr=out["error"]["message"]),
                    "error": out["error"]}
        if name == "brave_search":
            from minillama.tools.search import brave_search

            return {"ok": True, "content": brave_search(args["query"]), "error": None}
        if name == "photogen":
            err = tool_error("unavailable", "photogen (image generation) is not available on this machine", name)
            return {"ok": False, "content": format_tool_result("failed", stderr=err["message"]), "error": err}
        out = self.registry.call(call)
        if out["ok"]:
            result = out["result"]
            text = result if isinstance(result, str) else json.dumps(result)
            return {"ok": True, "content": text, "error": None}
        return {"ok": False, "content": format_tool_result("failed", stderr=out["error"]["message"]),
                "error": out["error"]}


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
    return the text with the stop token written out (so the parser sees the same string Meta's would)."""

    def __init__(self, model, chat_format: ChatFormat, max_new_tokens: int = 128, temperature: float = 0.0,
                 tool_prompt_format: str = "json", seed: int | None = None):
        self.model, self.chat_format = model, chat_format
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.tool_prompt_format = tool_prompt_format

    def __call__(self, messages: list[dict]) -> str:
        from minillama.generate import generate

        cf = self.chat_format
        prompt = cf.encode_dialog_prompt(messages, tool_prompt_format=self.tool_prompt_format)
        limit = getattr(self.model.args, "max_seq_len", None)
        budget = self.max_new_tokens if limit is None else max(0, min(self.max_new_tokens, limit - len(prompt)))
        if budget == 0:
            return ""  # no room left: parsed as out_of_tokens with empty content
        was_training = self.model.training
        self.model.eval()
        stops = (cf.eot_id, cf.eom_id)
        new = generate(self.model, [prompt], budget, temperature=self.temperature, stop_tokens=stops,
                       seed=self.seed)[0]
        full = new + (self._stop_after(prompt, new, stops) if len(new) < budget else [])
        self.model.train(was_training)
        return cf.tokenizer.decode(full)

    def _stop_after(self, prompt: list[int], new: list[int], stops: tuple[int, int]) -> list[int]:
        """Which stop token ended generation (generate() drops it): the likelier of eot/eom after `new`.

        With greedy decoding this is exactly the token generate() picked; with sampling it is the more probable
        of the two, which is what decides eom (wait for a tool) vs eot (done) in practice.
        """
        import torch

        with torch.no_grad():
            logits = self.model(torch.tensor([prompt + new]))[0, -1]
        return [max(stops, key=lambda s: float(logits[s]))]


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
            messages.append({"role": "user", "content": custom_tools_prompt(self.toolbox.registry.definitions(),
                                                                             custom_tools_format)})
        messages.append({"role": "user", "content": user})
        return messages

    def step(self, messages: list[dict]) -> dict:
        """One model call and its tool calls; appends to `messages`. Returns the step record ("done" when the
        assistant ended its turn without a tool call)."""
        text = self.model(messages)
        parsed = parse_assistant_text(text)
        assistant = {"role": "assistant", "content": parsed["content"], "tool_calls": parsed["tool_calls"],
                     "stop_reason": "end_of_message" if parsed["stop_reason"] == "end_of_message" else "end_of_turn"}
        messages.append(assistant)
        record = {"text": text, "tool_calls": parsed["tool_calls"], "results": [], "error": parsed["error"],
                  "done": False}
        if parsed["error"] is not None and not parsed["tool_calls"]:
            body = format_tool_result("failed", stderr="Could not read the tool call: " + parsed["error"]["message"])
            messages.append({"role": "ipython", "content": body})
            record["results"].append({"ok": False, "content": body, "error": parsed["error"]})
        elif parsed["tool_calls"]:
            for call in parsed["tool_calls"]:
                if parsed["error"] is not None:  # recognised but unusable arguments
                    out = {"ok": False, "content": format_tool_result("failed", stderr=parsed["error"]["message"]),
                           "error": parsed["error"]}
                else:
                    out = self.toolbox.execute(call)
                messages.append({"role": "ipython", "content": out["content"]})
                record["results"].append(out)
        elif parsed["stop_reason"] == "end_of_message":
            body = format_tool_result("failed", stderr="You ended the message with <|eom_id|> but made no tool "
                                                       "call; call a tool or end your turn with <|eot_id|>.")
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
        return AgentResult(messages, messages[-1]["content"] if messages[-1]["role"] == "assistant" else "",
                           "step_limit", steps)


# ----------------------------------------------------------------------------------------------------------------
# Showing a run
# ----------------------------------------------------------------------------------------------------------------
def format_transcript(messages: list[dict], skip_system: bool = True, width: int = 1500) -> str:
    """A readable transcript: one block per message, tool calls written as the model wrote them."""
    from minillama.chat import encode_tool_call

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
SALES_CSV = """date,region,product,units,amount
2024-01-05,north,widget,12,240.00
2024-01-09,south,gadget,3,297.00
2024-01-17,north,gadget,5,495.00
2024-02-02,east,widget,20,400.00
2024-02-11,south,widget,7,140.00
2024-02-19,east,gizmo,2,318.00
2024-03-03,north,gizmo,1,159.00
2024-03-08,south,gadget,4,396.00
2024-03-21,east,widget,9,180.00
"""

CSV_FIRST_TRY = """import csv
rows = list(csv.DictReader(open("sales.csv")))
totals = {}
for row in rows:
    totals[row["region"]] = totals.get(row["region"], 0) + row["revenue"]
print(totals)"""

CSV_FIX = """import csv
rows = list(csv.DictReader(open("sales.csv")))
print("columns:", list(rows[0]))
totals = {}
for row in rows:
    totals[row["region"]] = totals.get(row["region"], 0.0) + float(row["amount"])
for region, total in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"{region}: {total:.2f}")"""


def _csv_explanation(messages: list[dict]) -> str:
    """The scripted model's last turn: read the fixed script's output and explain the result and the error."""
    output = messages[-1]["content"]
    totals = [line.split(": ") for line in output.split("[stdout]")[-1].split("[/stdout]")[0].splitlines()
              if ": " in line and not line.startswith("columns")]
    totals = [t for t in totals if len(t) == 2] if "[stdout]" in output else []
    if not totals:  # the fixed script did not print totals (e.g. the sandbox could not start): say so, do not crash
        return f"The corrected script did not print the totals; the tool said:\n{output.strip()[:500]}<|eot_id|>"
    best, amount = totals[0]
    listing = ", ".join(f"{r} {a}" for r, a in totals)
    return (f"Revenue by region: {listing}. {best.capitalize()} leads with {amount}. My first script failed with "
            "KeyError: 'revenue' because the file has no revenue column; the money is in `amount`, stored as "
            "text, so the fix reads `amount` and converts it with float() before adding.<|eot_id|>")


def csv_demo(max_steps: int = 6, **sandbox_kwargs) -> AgentResult:
    """The course's running example with a scripted model: the first script fails, the second fixes it, the
    answer explains. The CSV is copied into the sandbox's private working directory."""
    model = ScriptedModel([f"<|python_tag|>{CSV_FIRST_TRY}<|eom_id|>", f"<|python_tag|>{CSV_FIX}<|eom_id|>",
                           _csv_explanation])
    with Toolbox(builtin=("code_interpreter",), files={"sales.csv": SALES_CSV}, **sandbox_kwargs) as toolbox:
        agent = Agent(model, toolbox, max_steps=max_steps)
        return agent.run("Which region brought in the most revenue in sales.csv? Show the totals.")


# ----------------------------------------------------------------------------------------------------------------
# CLI: minillama chat
# ----------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama chat", description="Chat with a model that can call tools "
                                "(code interpreter in a sandbox, calculator, local documentation search).")
    p.add_argument("--demo", action="store_true", help="run the scripted CSV example (no model needed)")
    p.add_argument("--model", default=None, help="checkpoint folder (e.g. one written by minillama.tooluse)")
    p.add_argument("--tokenizer", default=None, help="rank file (default: the shipped course tokenizer)")
    p.add_argument("--prompt", default=None, help="one request; without it, read requests from stdin")
    p.add_argument("--tools", default="code_interpreter,wolfram_alpha,brave_search",
                   help="comma-separated built-in tools to enable")
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--timeout", type=float, default=10.0, help="sandbox wall-clock limit per run (s)")
    p.add_argument("--show-isolation", action="store_true", help="print the sandbox isolation level and exit")
    p.add_argument("--allow-unsafe-sandbox", action="store_true",
                   help="run model-written code even without OS isolation (no bubblewrap or user namespaces): "
                        "then your files, the network and your other processes are NOT protected")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.show_isolation:
        from minillama.tools.sandbox import detect_isolation

        print(json.dumps(detect_isolation(), indent=2))
        return 0
    unsafe = {"allow_weak_isolation": True} if args.allow_unsafe_sandbox else {}
    if args.demo:
        result = csv_demo(timeout_s=args.timeout, **unsafe)
        print(format_transcript(result.messages))
        print(f"\n[{result.stop} after {len(result.steps)} model calls]")
        return 0
    if args.model is None:
        print("minillama chat: pass --demo for the scripted example, or --model CHECKPOINT_DIR", file=sys.stderr)
        return 2
    from minillama.checkpoint import load_checkpoint
    from minillama.tokenizer import BPETokenizer
    from minillama.utils import set_threads

    set_threads()
    from pathlib import Path

    folder = Path(args.model)
    if (folder / "checkpoint" / "config.json").is_file():
        folder = folder / "checkpoint"
    model = load_checkpoint(folder)
    tok_path = args.tokenizer or (folder / "tokenizer.model" if (folder / "tokenizer.model").is_file() else None)
    if tok_path is None:
        from minillama.posttrain.common import shipped_tokenizer_path

        tok_path = shipped_tokenizer_path()
    chat_format = ChatFormat(BPETokenizer.load(str(tok_path)))
    tools = tuple(t for t in args.tools.split(",") if t)
    lm = TransformerModel(model, chat_format, max_new_tokens=args.max_new_tokens)
    requests = [args.prompt] if args.prompt else (line.strip() for line in sys.stdin if line.strip())
    with Toolbox(builtin=tools, timeout_s=args.timeout, **unsafe) as toolbox:
        for request in requests:
            result = Agent(lm, toolbox, max_steps=args.max_steps).run(request)
            print(format_transcript(result.messages))
            print(f"\n[{result.stop} after {len(result.steps)} model calls]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The toolbox: dispatches parsed tool calls to the built-in tools (the sandboxed code interpreter, the calculator,
local documentation search) and to custom functions in a `ToolRegistry` (paper §4.3.5). Every failure comes back as
a `failed` ipython message and a structured `tool_error`, never an exception that would end the agent's loop."""

from __future__ import annotations

import json

from minillama.chat_format import BUILTIN_TOOLS, tool_error
from minillama.tooluse.format import format_tool_result
from minillama.tooluse.prompts import builtin_system_prompt
from minillama.tooluse.tools.calculator import calculate
from minillama.tooluse.tools.registry import ToolRegistry
from minillama.tooluse.tools.sandbox import Sandbox, SandboxRefused
from minillama.tooluse.tools.search import brave_search

__all__ = ["Toolbox"]


class Toolbox:
    """Dispatches parsed tool calls: built-ins to the sandbox / calculator / local search, others to a registry.

    `builtin`: the built-in tools switched on (the system prompt lists them); `registry`: custom functions;
    `sandbox_kwargs`: limits for the code interpreter (`minillama.tooluse.tools.sandbox.Sandbox`), whose working
    directory lives as long as the toolbox (files persist between calls within one run, like a notebook kernel's
    folder). Without OS isolation (bubblewrap or Linux namespaces) the sandbox refuses model-written code and each
    call returns that refusal as a `failed` message, unless `allow_weak_isolation=True` is passed.
    """

    def __init__(
        self,
        builtin=("code_interpreter", "wolfram_alpha", "brave_search"),
        registry: ToolRegistry | None = None,
        files: dict | None = None,
        **sandbox_kwargs,
    ):
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
                return tool_error(
                    "unknown_tool",
                    f"the built-in tool {name} is not enabled here; enabled: "
                    f"{', '.join(self.builtin + tuple(self.registry.names()))}",
                    name,
                )
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
            try:
                sandbox = self.sandbox
            except SandboxRefused as exc:  # no OS isolation here and no opt-in: the model reads why
                return {
                    "ok": False,
                    "content": format_tool_result("failed", stderr=str(exc)),
                    "error": tool_error("sandbox_refused", str(exc), name),
                }
            result = sandbox.run(args["code"])
            return {
                "ok": result.ok,
                "content": result.as_tool_message(),
                "error": None
                if result.ok
                else tool_error("code_failed", result.message or "the code raised an exception", name),
            }
        if name == "wolfram_alpha":
            out = calculate(args["query"])
            if out["ok"]:
                return {"ok": True, "content": out["result"], "error": None}
            return {
                "ok": False,
                "content": format_tool_result("failed", stderr=out["error"]["message"]),
                "error": out["error"],
            }
        if name == "brave_search":
            return {"ok": True, "content": brave_search(args["query"]), "error": None}
        if name == "photogen":
            err = tool_error("unavailable", "photogen (image generation) is not available on this machine", name)
            return {"ok": False, "content": format_tool_result("failed", stderr=err["message"]), "error": err}
        out = self.registry.call(call)
        if out["ok"]:
            result = out["result"]
            text = result if isinstance(result, str) else json.dumps(result)
            return {"ok": True, "content": text, "error": None}
        return {
            "ok": False,
            "content": format_tool_result("failed", stderr=out["error"]["message"]),
            "error": out["error"],
        }

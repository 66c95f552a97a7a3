"""What a tool sends back: the body of an `ipython` message (paper §4.3.5).

A code run reports `completed` or `failed`, then its non-empty output streams, as Meta's reference agent writes it.
The tool *calls* an assistant writes, and reading them back from generated text, are part of the chat format
(`minillama.chat_format`: `encode_tool_call`, `parse_assistant_text`), since `ChatFormat` renders and decodes them.
"""

from __future__ import annotations

__all__ = ["format_tool_result"]


def format_tool_result(status: str, stdout: str = "", stderr: str = "") -> str:
    """The body of an `ipython` message reporting a code run: `completed` or `failed`, then the non-empty streams.

    >>> format_tool_result("completed", stdout="True\\n")
    'completed\\n[stdout]True\\n[/stdout]'
    """
    if status not in ("completed", "failed"):
        raise ValueError(f"status must be 'completed' or 'failed', got {status!r}")
    text = status
    if stdout:
        text += f"\n[stdout]{stdout}[/stdout]"
    if stderr:
        text += f"\n[stderr]{stderr}[/stderr]"
    return text

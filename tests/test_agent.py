"""The agent loop: tools run, results go back as ipython messages, errors never end the loop, and the whole
transcript is a valid Llama 3.1 dialog (encodes identically with Meta's ChatFormat)."""

import io

import pytest

from minillama.chat_format import ChatFormat
from minillama.cli.chat import main
from minillama.tooluse.agent import Agent, ScriptedModel, format_transcript
from minillama.tooluse.demo import csv_demo
from minillama.tooluse.toolbox import Toolbox
from minillama.tooluse.tools.registry import ToolRegistry


def weather_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.register
    def get_weather(city: str, days: int = 1) -> dict:
        """Get the weather for a city."""
        return {"city": city, "forecast": ["sunny"] * days}

    return reg


def test_csv_running_example():
    result = csv_demo(timeout_s=10)
    assert result.stop == "answered" and len(result.steps) == 3
    first, second = result.steps[0]["results"][0], result.steps[1]["results"][0]
    assert not first["ok"] and "KeyError: 'revenue'" in first["content"]
    assert second["ok"] and "east: 898.00" in second["content"]  # 400 + 318 + 180
    assert "East leads with 898.00" in result.answer and "KeyError" in result.answer
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "user", "assistant", "ipython", "assistant", "ipython", "assistant"]
    assert result.messages[2]["stop_reason"] == "end_of_message" and result.messages[-1]["stop_reason"] == "end_of_turn"


def test_calculator_and_search_and_custom_tool():
    model = ScriptedModel(
        [
            'wolfram_alpha.call(query="1234 * 5678")<|eom_id|>',
            'brave_search.call(query="with statement")<|eom_id|>',
            '{"type": "function", "name": "get_weather", "parameters": {"city": "Oslo", "days": 2}}<|eom_id|>',
            "Done.<|eot_id|>",
        ]
    )
    toolbox = Toolbox(builtin=("wolfram_alpha", "brave_search"), registry=weather_registry())
    result = Agent(model, toolbox).run("several things")
    contents = [m["content"] for m in result.messages if m["role"] == "ipython"]
    assert contents[0] == "7006652"
    assert "Python language reference: with" in contents[1]
    assert contents[2] == '{"city": "Oslo", "forecast": ["sunny", "sunny"]}'
    assert result.answer == "Done." and result.stop == "answered"
    # custom tools are described to the model in a user message
    assert "get_weather" in result.messages[1]["content"] and result.messages[1]["role"] == "user"


@pytest.mark.parametrize(
    "bad,kind",
    [
        ('<function=get_weather>{"city": Oslo}</function><|eot_id|>', "bad_json"),
        ('{"type": "function", "name": "get_wether", "parameters": {"city": "Oslo"}}<|eom_id|>', "unknown_tool"),
        ('{"type": "function", "name": "get_weather", "parameters": {}}<|eom_id|>', "missing_argument"),
        ('{"type": "function", "name": "get_weather", "parameters": {"city": 3}}<|eom_id|>', "wrong_type"),
        ('{"name": "get_weather"}<|eom_id|>', "bad_call"),
        ('photogen.call(query="a llama")<|eom_id|>', "unknown_tool"),
        ("I will call a tool now<|eom_id|>", "no_call"),
        ("<|python_tag|>while True:\n    pass<|eom_id|>", "code_failed"),
    ],
)
def test_errors_go_back_to_the_model(bad, kind):
    model = ScriptedModel([bad, "Sorry, let me answer directly.<|eot_id|>"])
    toolbox = Toolbox(builtin=("code_interpreter",), registry=weather_registry(), timeout_s=1)
    with toolbox:
        result = Agent(model, toolbox).run("weather?")
    assert result.stop == "answered" and result.answer == "Sorry, let me answer directly."
    step = result.steps[0]
    assert step["results"] and not step["results"][0]["ok"]
    error = step["results"][0]["error"]
    assert error["type"] == kind, error
    tool_message = result.messages[-2]
    assert tool_message["role"] == "ipython" and tool_message["content"].startswith("failed\n[stderr]")


def test_step_limit():
    model = ScriptedModel(['wolfram_alpha.call(query="1+1")<|eom_id|>'] * 10)
    result = Agent(model, Toolbox(builtin=("wolfram_alpha",)), max_steps=3).run("loop forever")
    assert result.stop == "step_limit" and len(result.steps) == 3 and model.calls == 3
    with pytest.raises(ValueError):
        Agent(model, max_steps=0)


def test_transcript_encodes_like_meta():
    from llama_models.datatypes import RawMessage, StopReason, ToolCall
    from llama_models.llama3.chat_format import ChatFormat as MetaChatFormat
    from llama_models.llama3.tokenizer import Tokenizer

    tok = Tokenizer.get_instance()
    result = csv_demo(timeout_s=10)
    meta_messages = [
        RawMessage(
            role="tool" if m["role"] == "ipython" else m["role"],
            content=m["content"],
            stop_reason=StopReason(m["stop_reason"]) if m.get("stop_reason") else None,
            tool_calls=[
                ToolCall(call_id="0", tool_name=c["tool_name"], arguments=c["arguments"])
                for c in m.get("tool_calls", [])
            ],
        )
        for m in result.messages
    ]
    assert (
        ChatFormat(tok).encode_dialog_prompt(result.messages)
        == MetaChatFormat(tok).encode_dialog_prompt(meta_messages).tokens
    )
    text = format_transcript(result.messages)
    assert "[ipython]" in text and "<|python_tag|>" in text


def test_cli_demo(capsys, monkeypatch):
    assert main(["--demo"]) == 0
    out = capsys.readouterr().out
    assert "KeyError: 'revenue'" in out and "answered after 3 model calls" in out
    assert main(["--show-isolation"]) == 0
    capsys.readouterr()
    # no flags: requests from stdin, answered by the shipped tool-use model with the tools it was trained on
    monkeypatch.setattr("sys.stdin", io.StringIO("How much is 60 * 95 - 6?\n"))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert 'wolfram_alpha.call(query="60 * 95 - 6")' in out and "5694" in out, out


def test_csv_demo_explains_a_failed_fix_instead_of_crashing():
    """If the corrected script fails too, the scripted answer quotes the tool's error instead of raising."""
    from minillama.tooluse.demo import _csv_explanation

    failed = "failed\n[stderr]bwrap: execvp python: No such file\n[/stderr]"
    text = _csv_explanation([{"role": "tool", "content": failed}])
    assert "bwrap: execvp" in text and text.endswith("<|eot_id|>")

"""Synthetic tool-use data and its evaluation: the data is right (checked against Python and the sandbox), the
metrics measure what they say (an oracle scores 100%, a model that never calls tools scores 0 on calls), and a
tiny SFT run goes end to end."""

import pytest
import torch

from minillama.chat_format import encode_tool_call
from minillama.tooluse.tools.sandbox import run_code
from minillama.tooluse.train import (
    TOOLS_OFF,
    TOOLS_ON,
    evaluate_tool_use,
    make_tasks,
    task_dialog,
    train_tool_model,
    training_dialogs,
)


def test_calc_tasks_are_right():
    for task in [t for t in make_tasks(200, "train", seed=1) if t.kind == "calc"][:40]:
        expr = task.call["arguments"]["query"]
        assert task.call["tool_name"] == "wolfram_alpha" and expr in task.prompt
        assert int(task.result) == eval(expr)  # our own generated arithmetic: Python is the reference
        assert task.answer == f"The answer is {task.result}."


def test_code_tasks_match_the_sandbox():
    code_tasks = [t for t in make_tasks(100, "train", seed=2) if t.kind == "code"]
    assert {t.prompt.split()[0] for t in code_tasks} == {"Reverse", "Sort", "What"}
    for task in code_tasks[:5]:
        ran = run_code(task.call["arguments"]["code"], timeout_s=10)
        assert ran.as_tool_message() == task.tool_output and ran.stdout.strip() == task.result


def test_heldout_questions_are_new():
    """No held-out expression or program appears in training, whatever the wording."""
    train = {str(t.call["arguments"]) for t in make_tasks(3000, "train", seed=0) if t.call}
    held = [t for t in make_tasks(200, "heldout", seed=0) if t.kind != "chat"]
    assert held and not any(str(t.call["arguments"]) in train for t in held)
    kinds = {t.kind for t in make_tasks(200, "heldout", seed=0)}
    assert kinds == {"calc", "code", "chat"}
    with pytest.raises(ValueError):
        make_tasks(1, "test")


def test_dialogs_with_and_without_tools():
    task = next(t for t in make_tasks(50, "train") if t.kind == "calc")
    on, off = task_dialog(task, tools=True), task_dialog(task, tools=False)
    assert on[0]["content"] == TOOLS_ON and "Environment: ipython" in TOOLS_ON
    assert off[0]["content"] == TOOLS_OFF and "ipython" not in TOOLS_OFF
    assert [m["role"] for m in on] == ["system", "user", "assistant", "ipython", "assistant"]
    assert on[2]["stop_reason"] == "end_of_message" and on[-1]["stop_reason"] == "end_of_turn"
    assert [m["role"] for m in off] == ["system", "user", "assistant"]
    dialogs = training_dialogs(make_tasks(400, "train"), tools_off_share=0.25)
    assert 400 < len(dialogs) < 400 * 1.4


def oracle(messages):
    """Answers like the training data: calls the right tool, then copies the result."""
    tools_on = messages[0]["content"] == TOOLS_ON
    task = next(t for t in make_tasks(60, "heldout", seed=0) if t.prompt == messages[1]["content"])
    if messages[-1]["role"] == "ipython":
        return (
            f"Result: {messages[-1]['content'].split('[stdout]')[-1].split('[/stdout]')[0].strip()} "
            f"({task.result}).<|eot_id|>"
        )
    if tools_on and task.call:
        tag = "<|python_tag|>" if task.call["tool_name"] == "code_interpreter" else ""
        return tag + encode_tool_call(task.call) + "<|eom_id|>"
    return task.answer + "<|eot_id|>"


def test_metrics_for_an_oracle_and_a_tool_shy_model():
    tasks = make_tasks(12, "heldout", seed=0)
    good = evaluate_tool_use(oracle, None, tasks)
    assert good["well_formed"] == good["right_tool"] == good["accuracy_with_tools"] == 1.0
    assert good["accuracy_without_tools"] == 1.0 and good["tool_requests"] == sum(t.kind != "chat" for t in tasks)
    shy = evaluate_tool_use(lambda m: "I think it is 12.<|eot_id|>", None, tasks)
    assert shy["well_formed"] == 0.0 and shy["accuracy_with_tools"] == 0.0
    assert shy["right_tool"] == pytest.approx(sum(t.kind == "chat" for t in tasks) / len(tasks))
    broken = evaluate_tool_use(lambda m: '<function=wolfram_alpha>{"query": 2+}</function><|eot_id|>', None, tasks)
    assert broken["well_formed"] == 0.0


def test_tiny_sft_end_to_end():
    torch.manual_seed(0)
    model, cf, trainer = train_tool_model(
        n_train=60,
        steps=3,
        batch_size=2,
        seq_len=256,
        seed=0,
        model_args=dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1),
        progress=False,
    )
    assert len(trainer.history) == 3 and all(r["loss"] == r["loss"] for r in trainer.history)
    metrics = evaluate_tool_use(model, cf, make_tasks(3, "heldout"), max_new_tokens=8, max_steps=2)
    for key in ("well_formed", "right_tool", "accuracy_with_tools", "accuracy_without_tools"):
        assert 0.0 <= metrics[key] <= 1.0


def test_chat_defaults_to_the_shipped_tool_model_and_its_trained_tools(capsys):
    """`minillama chat` without --model uses minillama/assets/tooluse, and enables only the tools that model was
    trained with (code_interpreter, wolfram_alpha), not brave_search."""
    from minillama.assets import TOOLUSE, shipped_checkpoint
    from minillama.cli import main
    from minillama.cli.chat import _parser
    from minillama.tooluse.train import TRAINED_TOOLS

    args = _parser().parse_args([])
    assert args.model == str(shipped_checkpoint(TOOLUSE))
    assert args.tools.split(",") == list(TRAINED_TOOLS) == ["code_interpreter", "wolfram_alpha"]
    assert main(["chat", "--prompt", "What is 47 * 83 - 5?", "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "wolfram_alpha.call(" in out and "brave_search" not in out

"""Teaching a small model to call tools: synthetic tool dialogs, SFT, and a held-out evaluation (paper §4.3.5).

Llama 3 learns tool use from dialogs in which the assistant calls a tool, reads the result and answers. We build
such dialogs synthetically, three kinds of request:

- **calc**: arithmetic a small model cannot do "in its head" (`What is 47 * 83 - 5?`). With tools on, the
  assistant writes `wolfram_alpha.call(query="47 * 83 - 5")<|eom_id|>`, reads `3896` and answers
  `The answer is 3896.`
- **code**: questions a short program answers (sort a list, its maximum, reverse it, sum a range).
  The assistant writes `<|python_tag|>print(...)<|eom_id|>`, reads `completed [stdout]...[/stdout]`, answers.
- **chat**: greetings and small talk, answered directly (the right tool choice is *no* tool).

The same calc/code questions also appear with tools *off* (a system prompt without `Environment: ipython`), where
the target is the exact answer written directly. That is the baseline: the same model, the same training, but it
has to compute in its weights. Tool results in the training dialogs come from the real tools
(`minillama.tooluse.tools.calculator`, Python itself for the code answers), so what the model reads at test time looks
like what it read in training.

`train_tool_model()` fine-tunes with the post-training SFT loop (`minillama.posttrain.sft.run_sft`: assistant
tokens only, packed dialogs) and `evaluate_tool_use()` reports, on held-out requests:

- `well_formed`: share of tool-needing requests whose first reply parses as a valid call (right syntax, known tool,
  required string argument);
- `right_tool`: share of all requests whose first reply picks the expected tool (or none, for chat);
- `accuracy_with_tools`: share of calc/code requests whose final answer (after the agent ran the real tools) holds
  the right result;
- `accuracy_without_tools`: the same questions with tools off, answered directly.

`python -m minillama tooluse --out runs/tooluse` runs it all (about 13 minutes on one CPU thread) and writes
`results.json`. Measured on 100 held-out requests (74 needing a tool): well-formed calls 100%, right tool 100%,
accuracy with tools 89.2% against 2.7% without (calculator questions 92.1% vs 0%, code questions 86.1% vs 5.6%).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minillama.chat_format import parse_assistant_text
from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.posttrain.common import FRESH_ARGS, load_chat_format, load_policy
from minillama.posttrain.data import render, sft_loss
from minillama.posttrain.sft import DialogLoader, default_config
from minillama.tooluse.agent import Agent, TransformerModel, format_transcript
from minillama.tooluse.format import format_tool_result
from minillama.tooluse.prompts import builtin_system_prompt
from minillama.tooluse.toolbox import Toolbox
from minillama.tooluse.tools.calculator import calculate
from minillama.train import train

__all__ = [
    "ToolTask",
    "make_tasks",
    "task_dialog",
    "training_dialogs",
    "train_tool_model",
    "evaluate_tool_use",
    "TRAINED_TOOLS",
    "TOOLS_ON",
    "TOOLS_OFF",
]

TODAY = "21 September 2024"
#: The two system prompts: tools on (code interpreter + calculator) and off (dates only).
#: The built-in tools the shipped tool-use model was trained with (`minillama chat` enables only these by default).
TRAINED_TOOLS = ("code_interpreter", "wolfram_alpha")
TOOLS_ON = builtin_system_prompt(TRAINED_TOOLS, TODAY)
TOOLS_OFF = builtin_system_prompt((), TODAY)

NAMES = (
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Barbara",
    "Ken",
    "Dennis",
    "Margaret",
    "Edsger",
    "Donald",
    "Frances",
    "John",
    "Radia",
    "Guido",
    "Bjarne",
    "Yann",
    "Geoffrey",
    "Fei",
    "Andrej",
    "Ilya",
    "Oriol",
    "Noam",
)


@dataclass
class ToolTask:
    """One request: `kind` (calc/code/chat), the user text, the expected tool call (None for chat), the tool's
    output, and the expected answer text (`result` must appear in a correct final answer)."""

    kind: str
    prompt: str
    call: dict | None
    tool_output: str
    answer: str
    result: str
    tags: dict = field(default_factory=dict)


def _calc_task(rng: random.Random) -> ToolTask:
    a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(2, 9)
    expr = rng.choice([f"{a} * {b}", f"{a} * {b} + {c}", f"{a} * {b} - {c}", f"({a} + {b}) * {c}", f"{a} * {b} * {c}"])
    template = rng.choice(["What is {e}?", "Compute {e}.", "How much is {e}?", "Calculate {e}.", "{e} = ?"])
    out = calculate(expr)
    assert out["ok"], out
    return ToolTask(
        "calc",
        template.format(e=expr),
        {"tool_name": "wolfram_alpha", "arguments": {"query": expr}},
        out["result"],
        f"The answer is {out['result']}.",
        out["result"],
    )


def _code_task(rng: random.Random) -> ToolTask:
    nums = ", ".join(str(rng.randint(10, 99)) for _ in range(rng.randint(3, 5)))
    kind = rng.randrange(4)
    if kind == 0:
        prompt, code = f"Sort these numbers: {nums}.", f"print(sorted([{nums}]))"
    elif kind == 1:
        prompt, code = f"What is the largest of {nums}?", f"print(max([{nums}]))"
    elif kind == 2:
        prompt, code = f"Reverse the list [{nums}].", f"print([{nums}][::-1])"
    else:
        lo = rng.randint(10, 60)
        hi = rng.randint(lo + 5, 99)
        prompt, code = f"What is the sum of the numbers from {lo} to {hi}?", f"print(sum(range({lo}, {hi} + 1)))"
    stdout = _run_trusted(code)

    return ToolTask(
        "code",
        prompt,
        {"tool_name": "code_interpreter", "arguments": {"code": code}},
        format_tool_result("completed", stdout=stdout),
        f"The answer is {stdout.strip()}.",
        stdout.strip(),
    )


def _run_trusted(code: str) -> str:
    """Our own generated snippets (never model output): run in-process to make training data fast."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "<task>", "exec"), {})  # noqa: S102  (code written by _code_task above)
    return buffer.getvalue()


def _chat_task(rng: random.Random) -> ToolTask:
    name = rng.choice(NAMES)
    prompt, answer = rng.choice(
        [
            (f"Hello, I am {name}.", f"Hello {name}! How can I help you today?"),
            (f"My name is {name}.", f"Nice to meet you, {name}!"),
            (f"Thank you, this is {name}.", f"You are welcome, {name}!"),
            (f"Hi! {name} here.", f"Hi {name}! What can I do for you?"),
        ]
    )
    return ToolTask("chat", prompt, None, "", answer, name)


def make_tasks(n: int, split: str = "train", seed: int = 0, mix=(0.4, 0.4, 0.2)) -> list[ToolTask]:
    """`n` tasks (calc, code, chat in proportions `mix`). Splits use disjoint random streams, and the held-out
    split drops any calc/code task whose expression or program appears among the first 20,000 train tasks of the
    same seed (whatever the wording), so held-out questions are new to the model."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    rng = random.Random(f"{split}-{seed}")
    seen = _train_prompts(seed) if split == "heldout" else set()
    makers = (_calc_task, _code_task, _chat_task)
    tasks = []
    while len(tasks) < n:
        task = rng.choices(makers, weights=mix)[0](rng)
        if task.kind == "chat" or _task_key(task) not in seen:
            tasks.append(task)
    return tasks


_TRAIN_PROMPTS: dict[int, set] = {}


def _task_key(task: ToolTask) -> str:
    return json.dumps(task.call["arguments"]) if task.call else task.prompt


def _train_prompts(seed: int) -> set:
    if seed not in _TRAIN_PROMPTS:
        rng = random.Random(f"train-{seed}")
        _TRAIN_PROMPTS[seed] = {
            _task_key(rng.choices((_calc_task, _code_task, _chat_task), weights=(0.4, 0.4, 0.2))[0](rng))
            for _ in range(20_000)
        }
    return _TRAIN_PROMPTS[seed]


def task_dialog(task: ToolTask, tools: bool = True) -> list[dict]:
    """The finished training dialog for a task, with tools on (call, result, answer) or off (direct answer)."""
    messages = [
        {"role": "system", "content": TOOLS_ON if tools else TOOLS_OFF},
        {"role": "user", "content": task.prompt},
    ]
    if tools and task.call is not None:
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [task.call], "stop_reason": "end_of_message"},
            {"role": "ipython", "content": task.tool_output},
        ]
    messages.append({"role": "assistant", "content": task.answer, "stop_reason": "end_of_turn"})
    return messages


def training_dialogs(tasks: list[ToolTask], tools_off_share: float = 0.25, seed: int = 0) -> list[list[dict]]:
    """Dialogs for SFT: every task with tools on, plus a share of calc/code tasks again with tools off."""
    rng = random.Random(seed)
    dialogs = [task_dialog(t, tools=True) for t in tasks]
    dialogs += [task_dialog(t, tools=False) for t in tasks if t.kind != "chat" and rng.random() < tools_off_share]
    rng.shuffle(dialogs)
    return dialogs


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------
def train_tool_model(
    n_train: int = 6000,
    steps: int = 1400,
    lr: float = 4e-3,
    batch_size: int = 8,
    seq_len: int = 256,
    init: str | None = "fresh",
    seed: int = 0,
    out_dir: str | Path | None = None,
    chat_format=None,
    model_args: dict | None = None,
    progress: bool | None = None,
    log_every: int = 0,
):
    """SFT a small model on synthetic tool dialogs. Returns (model, chat_format, trainer).

    `init`: a checkpoint folder, "fresh" (default: a 128-wide, 4-layer model with tied embeddings, ~1.9M
    parameters), or "auto" (the shipped pre-trained model if any, else fresh); `model_args`: overrides for a fresh
    model (e.g. a smaller `dim` in smoke mode).

    Measured (one CPU thread, 1400 steps, ~13 min): the format is learned within ~200 steps, but *copying* numbers
    from the question into the call and from the tool result into the answer only appears after ~800 steps (the
    loss drops from ~0.7 to ~0.2: an induction-head phase change). Untied embeddings, or the 2-layer shipped model,
    did not get there in 700 steps (0% accuracy with perfectly formed calls).
    """
    chat_format = chat_format or load_chat_format()
    vocab = chat_format.tokenizer.n_words
    if init == "fresh" and model_args is None:
        model_args = {"tie_word_embeddings": True}
    if model_args:
        args = ModelArgs(vocab_size=vocab, **{**FRESH_ARGS, **model_args})
        model = Transformer(args).init_weights(seed=seed)
    else:
        model, _ = load_policy(init, vocab, seed=seed)
    examples = [render(chat_format, d) for d in training_dialogs(make_tasks(n_train, "train", seed), seed=seed)]
    cfg = default_config(steps, lr, batch_size, seq_len, seed)
    callbacks = []
    if log_every:

        def log(tr, record):
            if record["step"] % log_every == 0 or record["step"] == steps:
                print(f"step {record['step']:>5}  loss {record['loss']:.3f}  {tr.wall_s:.0f} s", flush=True)

        callbacks.append(log)
    trainer = train(
        model,
        DialogLoader(examples, seq_len, seed=seed),
        cfg,
        loss_fn=sft_loss,
        out_dir=out_dir,
        progress=progress,
        callbacks=callbacks,
    )
    model.eval()
    return model, chat_format, trainer


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------
def _expected_tool(task: ToolTask) -> str | None:
    return task.call["tool_name"] if task.call else None


def evaluate_tool_use(
    model,
    chat_format,
    tasks: list[ToolTask],
    max_new_tokens: int = 64,
    max_steps: int = 3,
    sandbox_timeout_s: float = 5.0,
    examples: int = 3,
) -> dict:
    """Held-out metrics (see the module docstring) and a few transcripts.

    `model`: our `Transformer` (run greedily through `agent.TransformerModel`) or any callable `messages -> text`.
    """

    if isinstance(model, torch.nn.Module):
        lm = TransformerModel(model, chat_format, max_new_tokens=max_new_tokens)
    else:
        lm = model
    counts = {"tool_requests": 0, "well_formed": 0, "right_tool": 0, "answered_with": 0, "answered_without": 0}
    by_kind: dict[str, list[int]] = {"calc": [0, 0, 0], "code": [0, 0, 0]}  # n, right with tools, right without
    transcripts = []
    with Toolbox(builtin=TRAINED_TOOLS, timeout_s=sandbox_timeout_s, memory_mb=512) as toolbox:
        for task in tasks:
            first = lm([{"role": "system", "content": TOOLS_ON}, {"role": "user", "content": task.prompt}])
            parsed = parse_assistant_text(first)
            call = parsed["tool_calls"][0] if parsed["tool_calls"] else None
            chosen = call["tool_name"] if call else None
            counts["right_tool"] += chosen == _expected_tool(task)
            if task.kind == "chat":
                continue
            counts["tool_requests"] += 1
            counts["well_formed"] += call is not None and parsed["error"] is None and toolbox.validate(call) is None
            # the full agent run, reusing the first reply we already generated
            replies = iter([first])
            agent = Agent(lambda msgs, replies=replies: next(replies, None) or lm(msgs), toolbox, max_steps=max_steps)
            result = agent.run([{"role": "system", "content": TOOLS_ON}, {"role": "user", "content": task.prompt}])
            ok_with = result.stop == "answered" and task.result in result.answer
            counts["answered_with"] += ok_with
            direct = parse_assistant_text(
                lm([{"role": "system", "content": TOOLS_OFF}, {"role": "user", "content": task.prompt}])
            )
            counts["answered_without"] += task.result in direct["content"]
            kind = by_kind[task.kind]
            kind[0] += 1
            kind[1] += ok_with
            kind[2] += task.result in direct["content"]
            if len(transcripts) < examples:
                transcripts.append(format_transcript(result.messages))
    n_tool = max(1, counts["tool_requests"])
    return {
        "n": len(tasks),
        "tool_requests": counts["tool_requests"],
        "well_formed": counts["well_formed"] / n_tool,
        "right_tool": counts["right_tool"] / max(1, len(tasks)),
        "accuracy_with_tools": counts["answered_with"] / n_tool,
        "accuracy_without_tools": counts["answered_without"] / n_tool,
        "by_kind": {
            k: {"n": n, "with_tools": w / max(1, n), "without_tools": wo / max(1, n)}
            for k, (n, w, wo) in by_kind.items()
        },
        "transcripts": transcripts,
    }


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

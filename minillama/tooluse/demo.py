"""The course's running example (chapter 12): a CSV analysis where the model's first script fails, it reads the
traceback in the ipython message, fixes the script, and explains the totals. The model is scripted, so the demo
runs without a trained checkpoint; the sandbox, the parser and the agent loop are the real ones."""

from __future__ import annotations

from minillama.tooluse.agent import Agent, AgentResult, ScriptedModel
from minillama.tooluse.toolbox import Toolbox

__all__ = ["SALES_CSV", "CSV_FIRST_TRY", "CSV_FIX", "csv_demo"]


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
    totals = [
        line.split(": ")
        for line in output.split("[stdout]")[-1].split("[/stdout]")[0].splitlines()
        if ": " in line and not line.startswith("columns")
    ]
    totals = [t for t in totals if len(t) == 2] if "[stdout]" in output else []
    if not totals:  # the fixed script did not print totals (e.g. the sandbox could not start): say so, do not crash
        return f"The corrected script did not print the totals; the tool said:\n{output.strip()[:500]}<|eot_id|>"
    best, amount = totals[0]
    listing = ", ".join(f"{r} {a}" for r, a in totals)
    return (
        f"Revenue by region: {listing}. {best.capitalize()} leads with {amount}. My first script failed with "
        "KeyError: 'revenue' because the file has no revenue column; the money is in `amount`, stored as "
        "text, so the fix reads `amount` and converts it with float() before adding.<|eot_id|>"
    )


def csv_demo(max_steps: int = 6, **sandbox_kwargs) -> AgentResult:
    """The course's running example with a scripted model: the first script fails, the second fixes it, the
    answer explains. The CSV is copied into the sandbox's private working directory."""
    model = ScriptedModel(
        [f"<|python_tag|>{CSV_FIRST_TRY}<|eom_id|>", f"<|python_tag|>{CSV_FIX}<|eom_id|>", _csv_explanation]
    )
    with Toolbox(builtin=("code_interpreter",), files={"sales.csv": SALES_CSV}, **sandbox_kwargs) as toolbox:
        agent = Agent(model, toolbox, max_steps=max_steps)
        return agent.run("Which region brought in the most revenue in sales.csv? Show the totals.")

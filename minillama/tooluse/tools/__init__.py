"""Tools for the Llama 3.1 tool-use format (paper §4.3.5).

- `sandbox`: the code interpreter (model-written Python in a limited, isolated child process);
- `calculator`: a safe arithmetic evaluator answering `wolfram_alpha` calls;
- `search`: keyword search over documentation installed on this machine, answering `brave_search` calls;
- `registry`: custom functions with JSON-schema arguments and structured errors.

The system prompt and tool instructions are in `minillama.tooluse.prompts`. Nothing is imported here.
"""

"""Tool use (paper §4.3.5), one package, from the wire format up:

- `format`: what a tool sends back (the body of an `ipython` message); the calls themselves are part of
  `minillama.chat_format`, which renders and parses them;
- `prompts`: the system prompt and the tool instructions of the Llama 3.1 format;
- `tools/`: the tools themselves (`sandbox` code interpreter, `calculator`, `search`, `registry` of custom functions);
- `toolbox`: dispatches parsed calls to the tools; `agent`: the generate → parse → run → append loop;
- `demo`: the scripted CSV example; `train`: teaching a small model to call tools, and measuring it.

Nothing is imported here, so `import minillama.tooluse.tools.sandbox` stays standard-library only.
"""

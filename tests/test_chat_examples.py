"""ChatFormat against the exact encodings in the course notes (llama-models 0.3.0, date pinned to 21 Sep 2024).

The id lists are copied from FACTS.md / ENCODED_EXAMPLES.md (produced by Meta's ChatFormat), the dialogs are built
with our own prompt builders, so this checks `minillama.chat_format` and `minillama.tooluse.prompts` together.
"""

import pytest

from minillama.chat_format import ChatFormat
from minillama.tooluse.format import format_tool_result
from minillama.tooluse.prompts import builtin_system_prompt, custom_tools_prompt

DATE = "21 September 2024"
WEATHER = {"name": "get_weather", "description": "Get the current weather for a city",
           "parameters": {"type": "object",
                          "properties": {"city": {"type": "string", "description": "City name"},
                                         "unit": {"type": "string", "description": "celsius or fahrenheit"}},
                          "required": ["city"]}}


@pytest.fixture(scope="module")
def chat():
    from llama_models.llama3.tokenizer import Tokenizer

    return ChatFormat(Tokenizer.get_instance())


def test_simple_chat(chat):
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"}]
    assert chat.encode_dialog_prompt(msgs) == SIMPLE_CHAT


def test_brave_search_call(chat):
    msgs = [{"role": "system", "content": builtin_system_prompt(("brave_search", "wolfram_alpha"), DATE,
                                                                 "You are a helpful assistant.")},
            {"role": "user", "content": "Search the web for the latest price of 1oz gold?"},
            {"role": "assistant", "content": "", "stop_reason": "end_of_message",
             "tool_calls": [{"tool_name": "brave_search", "arguments": {"query": "latest price of 1oz gold"}}]}]
    assert chat.encode_dialog_prompt(msgs) == BRAVE_SEARCH_CALL


def test_code_interpreter_and_result(chat):
    code = ("def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))\n\n"
            "print(is_prime(7))")
    msgs = [{"role": "system", "content": builtin_system_prompt(("code_interpreter",), DATE)},
            {"role": "user", "content": "Write code to check if 7 is prime, then run it."},
            {"role": "assistant", "content": "", "stop_reason": "end_of_message",
             "tool_calls": [{"tool_name": "code_interpreter", "arguments": {"code": code}}]},
            {"role": "ipython", "content": format_tool_result("completed", stdout="True\n")}]
    ids = chat.encode_dialog_prompt(msgs)
    assert ids == CODE_INTERPRETER
    assert ids.count(128010) == 1 and ids.count(128008) == 1  # one <|python_tag|>, one <|eom_id|>


@pytest.mark.parametrize("fmt", ["json", "function_tag"])
def test_custom_tool_call(chat, fmt):
    msgs = [{"role": "system", "content": builtin_system_prompt(("code_interpreter",), DATE)},
            {"role": "user", "content": custom_tools_prompt([WEATHER], fmt)},
            {"role": "user", "content": "What is the weather in San Francisco?"}]
    call = {"tool_name": "get_weather", "arguments": {"city": "San Francisco"}}
    if fmt == "json":
        msgs += [{"role": "assistant", "content": "", "stop_reason": "end_of_message", "tool_calls": [call]},
                 {"role": "tool", "content": '{"temperature": 18, "unit": "celsius"}'}]
        assert chat.encode_dialog_prompt(msgs, tool_prompt_format=fmt) == CUSTOM_JSON
    else:
        msgs += [{"role": "assistant", "content": "", "stop_reason": "end_of_turn", "tool_calls": [call]}]
        assert chat.encode_dialog_prompt(msgs, tool_prompt_format=fmt) == CUSTOM_FUNCTION_TAG


# (a) simple chat — 49 tokens
SIMPLE_CHAT = [
    128000, 128006, 9125, 128007, 271, 2675, 527, 264, 11190, 18328, 13, 128009, 128006, 882, 128007, 271, 3923,
    374, 279, 6864, 315, 9822, 30, 128009, 128006, 78191, 128007, 271, 791, 6864, 315, 9822, 374, 12366, 13, 128009,
    128006, 882, 128007, 271, 3112, 315, 10057, 30, 128009, 128006, 78191, 128007, 271
]

# (a2) builtin brave_search call — 87 tokens
BRAVE_SEARCH_CALL = [
    128000, 128006, 9125, 128007, 271, 13013, 25, 6125, 27993, 198, 16992, 25, 34300, 10947, 11, 80714, 92604,
    27731, 198, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366, 18, 198, 15724, 2696, 25, 220, 1691, 6250, 220, 2366,
    19, 271, 2675, 527, 264, 11190, 18328, 627, 128009, 128006, 882, 128007, 271, 6014, 279, 3566, 369, 279, 5652,
    3430, 315, 220, 16, 9700, 6761, 30, 128009, 128006, 78191, 128007, 271, 1347, 525, 10947, 8692, 10974, 429,
    19911, 3430, 315, 220, 16, 9700, 6761, 909, 128008, 128006, 78191, 128007, 271
]

# (b) code_interpreter + ipython result — 116 tokens
CODE_INTERPRETER = [
    128000, 128006, 9125, 128007, 271, 13013, 25, 6125, 27993, 271, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366,
    18, 198, 15724, 2696, 25, 220, 1691, 6250, 220, 2366, 19, 198, 128009, 128006, 882, 128007, 271, 8144, 2082,
    311, 1817, 422, 220, 22, 374, 10461, 11, 1243, 1629, 433, 13, 128009, 128006, 78191, 128007, 271, 128010, 755,
    374, 39317, 1471, 997, 262, 471, 308, 871, 220, 16, 323, 682, 1471, 1034, 294, 369, 294, 304, 2134, 7, 17, 11,
    528, 1471, 334, 15, 13, 20, 8, 489, 220, 16, 4489, 1374, 9820, 39317, 7, 22, 595, 128008, 128006, 23799, 4690,
    128007, 271, 35835, 198, 58, 37458, 60, 2575, 198, 25130, 37458, 60, 128009, 128006, 78191, 128007, 271
]

# (c) custom JSON function call (ToolPromptFormat.json) — 265 tokens
CUSTOM_JSON = [
    128000, 128006, 9125, 128007, 271, 13013, 25, 6125, 27993, 271, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366,
    18, 198, 15724, 2696, 25, 220, 1691, 6250, 220, 2366, 19, 198, 128009, 128006, 882, 128007, 271, 16533, 279,
    1217, 596, 3488, 555, 3339, 1005, 315, 279, 2768, 5865, 422, 4460, 627, 2746, 7000, 315, 279, 734, 649, 387,
    1511, 11, 4587, 2019, 779, 627, 8586, 374, 264, 1160, 315, 5865, 304, 4823, 3645, 512, 517, 262, 330, 1337, 794,
    330, 1723, 761, 262, 330, 1723, 794, 341, 286, 330, 609, 794, 330, 456, 70464, 761, 286, 330, 4789, 794, 330,
    1991, 279, 1510, 9282, 369, 264, 3363, 761, 286, 330, 14105, 794, 341, 310, 330, 1337, 794, 330, 1735, 761, 310,
    330, 13495, 794, 2330, 394, 341, 504, 330, 9103, 794, 341, 667, 330, 1337, 794, 330, 1735, 761, 667, 330, 4789,
    794, 330, 13020, 836, 702, 504, 457, 394, 1173, 394, 341, 504, 330, 3928, 794, 341, 667, 330, 1337, 794, 330,
    1735, 761, 667, 330, 4789, 794, 330, 66, 41347, 477, 282, 49010, 702, 504, 457, 394, 457, 310, 3291, 310, 330,
    6413, 794, 4482, 9103, 7171, 286, 457, 262, 457, 633, 5715, 734, 6880, 304, 4823, 3645, 13, 128009, 128006, 882,
    128007, 271, 3923, 374, 279, 9282, 304, 5960, 13175, 30, 128009, 128006, 78191, 128007, 271, 5018, 1337, 794,
    330, 1723, 498, 330, 609, 794, 330, 456, 70464, 498, 330, 14105, 794, 5324, 9103, 794, 330, 24661, 13175, 32075,
    128008, 128006, 23799, 4690, 128007, 271, 5018, 35658, 794, 220, 972, 11, 330, 3928, 794, 330, 66, 41347, 9388,
    128009, 128006, 78191, 128007, 271
]

# (c') custom <function=...> call (function_tag) — 275 tokens
CUSTOM_FUNCTION_TAG = [
    128000, 128006, 9125, 128007, 271, 13013, 25, 6125, 27993, 271, 38766, 1303, 33025, 2696, 25, 6790, 220, 2366,
    18, 198, 15724, 2696, 25, 220, 1691, 6250, 220, 2366, 19, 198, 128009, 128006, 882, 128007, 271, 2675, 617,
    2680, 311, 279, 2768, 5865, 1473, 10464, 279, 734, 364, 456, 70464, 6, 311, 364, 1991, 279, 1510, 9282, 369,
    264, 3363, 3730, 5018, 609, 794, 330, 456, 70464, 498, 330, 4789, 794, 330, 1991, 279, 1510, 9282, 369, 264,
    3363, 498, 330, 14105, 794, 5324, 9103, 794, 5324, 4789, 794, 330, 13020, 836, 498, 330, 913, 1857, 794, 330,
    496, 498, 330, 6413, 794, 837, 2186, 330, 3928, 794, 5324, 4789, 794, 330, 66, 41347, 477, 282, 49010, 498, 330,
    913, 1857, 794, 330, 496, 498, 330, 6413, 794, 905, 3500, 633, 39787, 1633, 15884, 1603, 8260, 5865, 627, 2746,
    499, 5268, 311, 1650, 264, 734, 27785, 10052, 304, 279, 2768, 3645, 449, 912, 9436, 477, 21166, 1473, 27, 1723,
    28, 8858, 9353, 1292, 89963, 8858, 1292, 794, 330, 8858, 3220, 1, 5474, 1723, 1363, 96459, 512, 12, 1442, 3411,
    369, 1972, 892, 2038, 1005, 9959, 5865, 1603, 16054, 1203, 311, 34300, 10947, 198, 12, 5830, 6880, 28832, 1833,
    279, 5300, 3645, 11, 1212, 449, 366, 1723, 28, 323, 842, 449, 694, 1723, 397, 12, 12948, 5137, 28832, 387, 5300,
    198, 12, 8442, 1650, 832, 734, 520, 264, 892, 198, 12, 10435, 279, 4553, 734, 1650, 10052, 389, 832, 1584,
    128009, 128006, 882, 128007, 271, 3923, 374, 279, 9282, 304, 5960, 13175, 30, 128009, 128006, 78191, 128007,
    271, 27, 1723, 29380, 70464, 89963, 9103, 794, 330, 24661, 13175, 1, 5474, 1723, 29, 128009, 128006, 78191,
    128007, 271
]


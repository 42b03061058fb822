"""The chat the conversation tests share: a system prompt, a question, a tool call and
its result, and the tool offered — built with the OpenAI SDK's own parameter types."""

from __future__ import annotations

from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are nayru, a 65816 assembly tutor."},
    {"role": "user", "content": "What does SEP #$20 do?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup_opcode", "arguments": '{"opcode": "SEP"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "SEP: set processor status bits"},
]  # fmt: skip
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "lookup_opcode",
                                      "parameters": {"type": "object", "properties": {}}}}
]  # fmt: skip

"""The conversation a logged response was given in: OpenAI chat messages and tools,
checked, and stored once per distinct prefix.

A record of turn 5 of a chat carries the system prompt and the four turns before it; the
record of turn 6 carries the same plus two messages. Stored whole, a 20-turn chat logged
turn by turn would keep turn 1 twenty times. So a conversation is a chain of nodes, one
per message (the tool definitions, when offered, first): a node is its parent's hash and
its own item, and its hash covers the whole chain before it. A record keeps the hash of
its last node (``conversation_hash``); each store keeps a node once, whoever logged it
first, and storage grows with a conversation linearly.

``query`` stays the last user turn and ``context_hash`` the hash of the chain before it,
so everything that reads records as (query, response) pairs works unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from afs.continuous.errors import InvalidFieldError

#: the most messages one record's conversation may hold
MAX_MESSAGES = 2_000
#: the most characters (as JSON) one record's conversation and tools may hold together
MAX_CONVERSATION_CHARS = 4_000_000
#: the most tools one record may offer
MAX_TOOLS = 256
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call",
     "audio", "weight"}
)  # fmt: skip


@dataclass(frozen=True)
class Node:
    """One stored step of a conversation: its hash, its parent's, and its item (a
    message, or ``{"tools": [...]}`` at the root) as canonical JSON."""

    hash: str
    parent: str | None
    item: str


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _node_hash(parent: str | None, item: str) -> str:
    blob = f"{parent or ''}\x1f{item}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()[:32]


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """``messages`` as OpenAI chat messages, or an :class:`InvalidFieldError` naming the
    first message and field that is not one."""
    if not isinstance(messages, list | tuple):
        raise InvalidFieldError("messages", messages, "must be a list of chat messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidFieldError(
            "messages", f"{len(messages)} messages", f"must hold at most {MAX_MESSAGES}"
        )
    return [check_message(message, f"messages[{i}]") for i, message in enumerate(messages)]


def check_message(message: Any, where: str) -> dict[str, Any]:
    """One chat message, or an :class:`InvalidFieldError` naming ``where`` and the field."""
    if not isinstance(message, Mapping):
        raise InvalidFieldError(where, message, "must be an object with a role")
    unknown = set(message) - _MESSAGE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InvalidFieldError(f"{where}.{key}", message[key], "is not a chat message field")
    role = message.get("role")
    if role not in ROLES:
        raise InvalidFieldError(f"{where}.role", role, f"must be one of {', '.join(ROLES)}")
    content = message.get("content")
    if content is None and role != "assistant":
        raise InvalidFieldError(f"{where}.content", content, "is required for a " + role)
    if content is not None and not isinstance(content, str):
        _check_parts(f"{where}.content", content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidFieldError(
            f"{where}.tool_call_id", message.get("tool_call_id"),
            "is required for a tool message (the id of the call it answers)",
        )  # fmt: skip
    if "tool_calls" in message:
        _check_tool_calls(f"{where}.tool_calls", message["tool_calls"])
    if message.get("name") is not None and not isinstance(message["name"], str):
        raise InvalidFieldError(f"{where}.name", message["name"], "must be a string")
    return dict(message)


def _check_parts(where: str, content: Any) -> None:
    if not isinstance(content, list):
        raise InvalidFieldError(where, content, "must be text or a list of content parts")
    for index, part in enumerate(content):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise InvalidFieldError(f"{where}[{index}]", part, "must be a part with a type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise InvalidFieldError(f"{where}[{index}].text", part.get("text"), "must be text")


def _check_tool_calls(where: str, calls: Any) -> None:
    if not isinstance(calls, list):
        raise InvalidFieldError(where, calls, "must be a list of tool calls")
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidFieldError(
                f"{where}[{index}]", call, "must be a call with function.name and arguments"
            )
        if not isinstance(function.get("arguments", ""), str):
            raise InvalidFieldError(
                f"{where}[{index}].function.arguments", function.get("arguments"),
                "must be a string (JSON text, as the API sends it)",
            )  # fmt: skip


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """``tools`` as OpenAI tool definitions (``{"type": "function", "function":
    {"name": …}}``), or an :class:`InvalidFieldError` naming the first that is not one."""
    if not isinstance(tools, list | tuple):
        raise InvalidFieldError("tools", tools, "must be a list of tool definitions")
    if len(tools) > MAX_TOOLS:
        raise InvalidFieldError("tools", f"{len(tools)} tools", f"must hold at most {MAX_TOOLS}")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidFieldError(
                f"tools[{index}]", tool, "must be a definition with function.name"
            )
    return [dict(tool) for tool in tools]


def text_of(content: Any) -> str:
    """A message's text: its content, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )  # fmt: skip
    return ""


def last_user_turn(messages: Sequence[Mapping[str, Any]]) -> int | None:
    """The index of the last user message (None: there is none)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return index
    return None


def chain(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> list[Node]:
    """The nodes of a conversation, root first (the tools, when offered, are the root)."""
    items = ([{"tools": list(tools)}] if tools else []) + list(messages)
    nodes: list[Node] = []
    parent: str | None = None
    size = 0
    for item in items:
        text = canonical(item)
        size += len(text)
        if size > MAX_CONVERSATION_CHARS:
            raise InvalidFieldError(
                "messages", f"{size:,}+ characters",
                f"must hold at most {MAX_CONVERSATION_CHARS:,} characters with the tools",
            )  # fmt: skip
        parent = _node_hash(parent, text)
        nodes.append(Node(parent, nodes[-1].hash if nodes else None, text))
    return nodes


@dataclass(frozen=True)
class Conversation:
    """What a record derives from its conversation."""

    query: str
    """The last user turn's text."""
    context_hash: str | None
    """The chain before the last user turn (None: nothing came before it)."""
    conversation_hash: str
    nodes: list[Node]


def derive(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> Conversation:
    """The query, hashes and nodes of checked ``messages`` and ``tools``."""
    if not messages:
        raise InvalidFieldError("messages", messages, "must hold at least one message")
    nodes = chain(messages, tools)
    turn = last_user_turn(messages)
    offset = 1 if tools else 0
    if turn is None:
        query, before = "", len(nodes) - len(messages)
    else:
        query, before = text_of(messages[turn].get("content")), turn + offset
    return Conversation(
        query=query,
        context_hash=nodes[before - 1].hash if before > 0 else None,
        conversation_hash=nodes[-1].hash,
        nodes=nodes,
    )


def rebuild(
    conversation_hash: str, cache: NodeCache
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages and tools of the conversation ending in ``conversation_hash``."""
    items: list[Any] = []
    current: str | None = conversation_hash
    while current is not None:
        found = cache.get(current)
        if found is None:
            raise LookupError(f"conversation node {current} is missing from the store")
        current = found[0]
        items.append(json.loads(found[1]))
    items.reverse()
    tools = None
    if items and isinstance(items[0], dict) and set(items[0]) == {"tools"}:
        tools = items.pop(0)["tools"]
    return items, tools


ChainRows = Iterable[tuple[str, str | None, str]]


class NodeCache:
    """Nodes read from a store, the most recently used kept (a bounded number, so an
    export of any size holds about the same memory): the records of one conversation
    share all but their last nodes, and a miss reads the node's whole chain at once."""

    def __init__(self, fetch_chain: Callable[[str], ChainRows], *, size: int = 20_000):
        self._fetch_chain = fetch_chain
        self._size = size
        self._nodes: OrderedDict[str, tuple[str | None, str]] = OrderedDict()

    def get(self, node_hash: str) -> tuple[str | None, str] | None:
        found = self._nodes.get(node_hash)
        if found is None:
            for each, parent, item in self._fetch_chain(node_hash):
                self._nodes[each] = (parent, item)
            while len(self._nodes) > self._size:
                self._nodes.popitem(last=False)
            return self._nodes.get(node_hash)
        self._nodes.move_to_end(node_hash)
        return found


def stored_nodes(records: Iterable[Any]) -> list[tuple[str, str | None, str]]:
    """The nodes of the records' conversations, as rows to store (duplicates included:
    the store keeps one)."""
    rows: list[tuple[str, str | None, str]] = []
    for record in records:
        if record.messages is not None:
            rows.extend((n.hash, n.parent, n.item) for n in chain(record.messages, record.tools))
    return rows


def fill(records: Iterable[Any], cache: NodeCache) -> None:
    """Give each record with a ``conversation_hash`` its messages and tools back, and
    one whose response is a message that message."""
    for record in records:
        if record.conversation_hash is not None and record.messages is None:
            record.messages, record.tools = rebuild(record.conversation_hash, cache)
        if record.response_json is not None and record.response_message is None:
            record.response_message = json.loads(record.response_json)


#: nodes read per query while walking a chain: the next turn of a conversation misses
#: only its newest nodes, and the rest of its chain is in the cache already
CHAIN_STEP = 8
#: up to :data:`CHAIN_STEP` nodes of the chain from one node towards its root, in one
#: query (both dialects; the placeholder is the dialect's)
CHAIN_SQL = (
    "WITH RECURSIVE chain(hash, parent, item) AS ("
    "SELECT hash, parent, item FROM conversation_nodes WHERE hash = {mark} "
    "UNION ALL SELECT n.hash, n.parent, n.item FROM conversation_nodes AS n "
    "JOIN chain AS c ON n.hash = c.parent) SELECT hash, parent, item FROM chain "
    f"LIMIT {CHAIN_STEP}"
)


def orphaned_nodes(
    candidates: set[str], referenced: set[str], children: dict[str, set[str]]
) -> set[str]:
    """Those of ``candidates`` (nodes whose records were deleted) that nothing needs any
    more: no record ends at them and no needed node extends them. ``children`` maps a
    candidate to the nodes extending it; a node outside the candidates counts as needed."""
    orphans = candidates - referenced
    changed = True
    while changed:
        changed = False
        for node in list(orphans):
            if any(child not in orphans for child in children.get(node, ())):
                orphans.discard(node)
                changed = True
    return orphans

"""Merge values into a YAML text in place: comments, key order and every untouched line stay as written.

params.yaml documents its keys in comments, and a preset (configs/*.yaml) changes some of its
values. Loading and dumping the file would drop the comments (PyYAML) or re-wrap lines that did not
change (ruamel's round trip joins or re-indents a hand-wrapped flow list). Here only the text of a
changed value is replaced, by the new value as one-line flow YAML, and a key the text lacks is
added after the last line of its mapping, so `git diff params.yaml` shows exactly what changed.
The spans come from PyYAML's composer: every node has start and end marks in the text.
"""

from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Edit = tuple[int, int, str]
"""(start, end, replacement): text[start:end] becomes replacement."""


def flow_value(value: Any) -> str:
    """A value as one line of flow YAML (`[0, 1, 2]`, `{policy: basic}`, `null`, `0.001`)."""
    # safe_dump ends a lone scalar with the document-end marker "..."
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 16).strip().removesuffix("...").strip()


def merged(base: Mapping, changes: Mapping) -> dict:
    """Deep merge, `changes` winning: mappings merge key by key, any other value replaces."""
    result = dict(base)
    for key, value in (changes or {}).items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def merge_text(text: str, changes: Mapping) -> str:
    """`text` (a YAML mapping) with `changes` deep-merged in as `merged` does, edited in place.

    A value equal to the text's stays as it is spelled (1.0e-4 is not rewritten as 0.0001). The
    result always loads as merged(safe_load(text), changes); a text this cannot edit so is a
    ValueError, not a wrong file.
    """
    root = yaml.compose(text)
    if root is None:  # an empty document
        return text + "".join(f"{flow_value(key)}: {flow_value(value)}\n" for key, value in changes.items())
    if not isinstance(root, MappingNode):
        raise ValueError("the YAML document is not a mapping")
    old = yaml.safe_load(text)
    edits: list[Edit] = []
    _merge_mapping(root, old, changes, text, edits)
    edited = text
    for start, end, replacement in sorted(edits, reverse=True):  # from the end: earlier spans keep their offsets
        edited = edited[:start] + replacement + edited[end:]
    if yaml.safe_load(edited) != merged(old, changes):
        raise ValueError("editing the YAML text in place did not give the merged values")
    return edited


def _merge_mapping(node: MappingNode, old: Mapping, changes: Mapping, text: str, edits: list[Edit]) -> None:
    children = {key.value: (key, value) for key, value in node.value if isinstance(key, ScalarNode)}
    missing = {}
    for key, new in changes.items():
        if str(key) not in children or key not in old:
            missing[key] = new
            continue
        key_node, value_node = children[str(key)]
        if isinstance(new, Mapping) and isinstance(value_node, MappingNode):
            _merge_mapping(value_node, old[key], new, text, edits)
        elif old[key] != new or type(old[key]) is not type(new):  # 1 == 1.0 == True, yet each spells a different type
            edits.append(_replacement(key_node, value_node, new))
    if missing:
        edits.append(_insertion(node, missing, text))


def _replacement(key: Node, value: Node, new: Any) -> Edit:
    start, end = value.start_mark.index, _end(value)
    if start == end:  # an empty value (`root:`): the mark sits right after the colon
        return start, end, f" {flow_value(new)}"
    if _is_block(value):  # a block collection starts on the next line: write the flow value after the colon
        colon_end = key.end_mark.index + 1
        return colon_end, end, f" {flow_value(new)}"
    return start, end, flow_value(new)


def _insertion(node: MappingNode, missing: Mapping, text: str) -> Edit:
    entries = [f"{flow_value(key)}: {flow_value(value)}" for key, value in missing.items()]
    if not _is_block(node):  # {a: 1} -> {a: 1, b: 2}: before the closing brace
        close = node.end_mark.index - 1
        separator = ", " if node.value else ""
        return close, close, separator + ", ".join(entries)
    indent = " " * node.value[0][0].start_mark.column
    line_end = text.find("\n", _end(node))
    position = len(text) if line_end < 0 else line_end
    return position, position, "".join(f"\n{indent}{entry}" for entry in entries)


def _is_block(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode) and not node.flow_style


def _end(node: Node) -> int:
    """Where a node's own text ends: a block collection's end mark lies past any comment lines
    that follow it, so it ends where its last value does."""
    if _is_block(node) and node.value:
        last = node.value[-1]
        return _end(last[1] if isinstance(node, MappingNode) else last)
    return node.end_mark.index

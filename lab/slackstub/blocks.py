"""Block Kit validation with Slack's limits, answering as Slack does: a list of
``"<reason> [json-pointer:/blocks/N/...]"`` strings, empty when the blocks are acceptable.

Only the limits a chat bot can realistically hit are checked: block count, known block types, text
objects, section/header/context/actions lengths, buttons.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
SECTION_TEXT_MAX = 3000
SECTION_FIELD_MAX = 2000
SECTION_FIELDS_MAX = 10
HEADER_TEXT_MAX = 150
CONTEXT_ELEMENTS_MAX = 10
ACTIONS_ELEMENTS_MAX = 25
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
ID_MAX = 255
MARKDOWN_TEXT_MAX = 12000

KNOWN_BLOCK_TYPES = frozenset(
    {
        "section",
        "header",
        "divider",
        "context",
        "actions",
        "image",
        "rich_text",
        "input",
        "file",
        "video",
        "markdown",
    }
)
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})


def _pointer(path: str) -> str:
    return f"[json-pointer:{path}]"


def _check_text(obj: Any, path: str, *, max_len: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"must be an object {_pointer(path)}"]
    kind = obj.get("type")
    allowed = {"plain_text"} if plain_only else TEXT_TYPES
    if kind not in allowed:
        return [f"must be one of {sorted(allowed)} {_pointer(path + '/type')}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be a non-empty string {_pointer(path + '/text')}"]
    if len(text) > max_len:
        return [f"must be less than {max_len + 1} characters {_pointer(path + '/text')}"]
    return []


def _check_button(element: dict[str, Any], path: str) -> list[str]:
    errors = _check_text(element.get("text"), path + "/text", max_len=BUTTON_TEXT_MAX, plain_only=True)
    value = element.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > BUTTON_VALUE_MAX):
        errors.append(f"must be less than {BUTTON_VALUE_MAX + 1} characters {_pointer(path + '/value')}")
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > ID_MAX):
        errors.append(f"must be less than {ID_MAX + 1} characters {_pointer(path + '/action_id')}")
    style = element.get("style")
    if style is not None and style not in ("primary", "danger"):
        errors.append(f"must be one of ['danger', 'primary'] {_pointer(path + '/style')}")
    return errors


def _check_block(block: Any, path: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"must be an object {_pointer(path)}"]
    kind = block.get("type")
    if kind not in KNOWN_BLOCK_TYPES:
        return [f"unsupported type: {kind} {_pointer(path + '/type')}"]
    errors: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > ID_MAX):
        errors.append(f"must be less than {ID_MAX + 1} characters {_pointer(path + '/block_id')}")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"must provide either text or fields {_pointer(path)}")
        if "text" in block:
            errors += _check_text(block["text"], path + "/text", max_len=SECTION_TEXT_MAX)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not fields or len(fields) > SECTION_FIELDS_MAX:
                errors.append(f"must be a list of 1 to {SECTION_FIELDS_MAX} items {_pointer(path + '/fields')}")
            else:
                for i, item in enumerate(fields):
                    errors += _check_text(item, f"{path}/fields/{i}", max_len=SECTION_FIELD_MAX)
    elif kind == "header":
        errors += _check_text(block.get("text"), path + "/text", max_len=HEADER_TEXT_MAX, plain_only=True)
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not text or len(text) > MARKDOWN_TEXT_MAX:
            errors.append(f"must be a string of 1 to {MARKDOWN_TEXT_MAX} characters {_pointer(path + '/text')}")
    elif kind in ("context", "actions"):
        limit = CONTEXT_ELEMENTS_MAX if kind == "context" else ACTIONS_ELEMENTS_MAX
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > limit:
            errors.append(f"must be a list of 1 to {limit} items {_pointer(path + '/elements')}")
        else:
            for i, element in enumerate(elements):
                epath = f"{path}/elements/{i}"
                if not isinstance(element, dict):
                    errors.append(f"must be an object {_pointer(epath)}")
                elif kind == "context" and element.get("type") in TEXT_TYPES:
                    errors += _check_text(element, epath, max_len=SECTION_TEXT_MAX)
                elif kind == "context" and element.get("type") != "image":
                    errors.append(f"unsupported type: {element.get('type')} {_pointer(epath + '/type')}")
                elif kind == "actions" and element.get("type") == "button":
                    errors += _check_button(element, epath)
                elif kind == "actions" and not isinstance(element.get("type"), str):
                    errors.append(f"must provide a type {_pointer(epath + '/type')}")
    elif kind == "image":
        if not isinstance(block.get("image_url"), str) and "slack_file" not in block:
            errors.append(f"must provide image_url or slack_file {_pointer(path)}")
        if not isinstance(block.get("alt_text"), str):
            errors.append(f"must provide alt_text {_pointer(path + '/alt_text')}")
    elif kind == "rich_text" and not isinstance(block.get("elements"), list):
        errors.append(f"must provide elements {_pointer(path + '/elements')}")
    return errors


def validate_blocks(blocks: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS, path: str = "/blocks") -> list[str]:
    """Return Slack's error strings for `blocks` (already decoded from JSON); empty when valid."""
    if not isinstance(blocks, list):
        return [f"must be an array {_pointer(path)}"]
    if len(blocks) > max_blocks:
        return [f"must be less than {max_blocks + 1} items {_pointer(path)}"]
    errors: list[str] = []
    for i, block in enumerate(blocks):
        errors += _check_block(block, f"{path}/{i}")
    return errors

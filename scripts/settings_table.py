"""The README's settings table, generated from the bot's and the agent's settings models.

python -m scripts.settings_table          rewrite the table in README.md
python -m scripts.settings_table --check  fail if README.md's table is not current
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot.settings import BotSettings
from nodeagent.settings import AgentSettings

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def _docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Field docstrings (the string literal after each field), read from the class source."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(model))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for previous, node in itertools.pairwise(body):
        if not (isinstance(previous, ast.AnnAssign) and isinstance(previous.target, ast.Name)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs[previous.target.id] = " ".join(node.value.value.split())
    return docs


def _default(value: Any) -> str:
    if type(value).__name__ == "PydanticUndefinedType":
        return "required"
    if value is None or value in ({}, [], ""):
        return "—"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, delimiter: str = "__") -> list[str]:
    docs = _docstrings(model)
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = next(
            (a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if nested is not None:
            rows += _rows(nested, f"{prefix}{name.upper()}{delimiter}")
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(f"| `{prefix}{name.upper()}` | {_default(default)} | {docs.get(name, '')} |")
    return rows


def table() -> str:
    """The markdown table (between its markers)."""
    lines = [
        BEGIN,
        "| bot setting (env var; also in the `--config` YAML by field name) | default | what it is |",
        "| --- | --- | --- |",
        *_rows(BotSettings, "KUBEREACH_"),
        "",
        "| agent setting (env var; flags `--node`, `--listen`, … override) | default | what it is |",
        "| --- | --- | --- |",
        *_rows(AgentSettings, "KUBEREACH_AGENT_"),
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    current = text[start:end]
    if "--check" in argv:
        if current != table():
            print("README.md's settings table is stale: run `python -m scripts.settings_table`")
            return 1
        return 0
    readme.write_text(text[:start] + table() + text[end:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The project documents itself: every verdict code and hop has its entry in docs/, and the README
points users at the project's own docs, never at files they do not have."""

from __future__ import annotations

import re
from pathlib import Path

from bot.playbook.models import Hop, VerdictCode

ROOT = Path(__file__).resolve().parents[2]


def test_every_verdict_code_has_a_row_in_docs_verdicts() -> None:
    text = (ROOT / "docs" / "verdicts.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)`", text, flags=re.MULTILINE))
    documented |= {code for pair in re.findall(r"^\| `([A-Z_]+)` / `([A-Z_]+)`", text, flags=re.MULTILINE) for code in pair}
    missing = sorted(code.value for code in VerdictCode if code.value not in documented)
    assert not missing, f"verdict codes without a row in docs/verdicts.md: {missing}"


def test_every_hop_is_named_in_docs_verdicts() -> None:
    text = (ROOT / "docs" / "verdicts.md").read_text()
    missing = sorted(hop.value for hop in Hop if f"`{hop.value}`" not in text)
    assert not missing, f"hops not explained in docs/verdicts.md: {missing}"


def test_readme_links_resolve_and_never_point_outside_the_project() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "shared/" not in readme
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"

"""The README's settings table lists every setting of the bot and the agent, as the models define them."""

from __future__ import annotations

from scripts.settings_table import main


def test_readme_settings_table_is_generated_from_the_current_models() -> None:
    assert main(["--check"]) == 0, "run `python -m scripts.settings_table` and commit README.md"

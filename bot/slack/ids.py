"""The ids the app gives Slack and gets back (defined with the renderers that put them in messages,
`bot.render.ids`; the Slack handlers match on them from here)."""

from bot.render.ids import ActionId, BlockId, Command, numbered

__all__ = ["ActionId", "BlockId", "Command", "numbered"]

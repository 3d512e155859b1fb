"""kubereach bot: scheduled network health digests.

A digest sweeps every node agent and the API (`sweep.py`), adds what the investigation history says
(`store.py`), and marks each problem new, still there or gone since the channel's previous digest
(`content.py`); `bot.render.digest` shows it. Public entry points:

- `bot.digest.slack.handle(text, channel, user, deps) -> DigestReply` — the `/reach digest …` command.
- `bot.digest.flows.DigestDeps` (`DigestDeps.from_settings(settings)`) — what the above need.
- `bot.digest.schedule.DigestScheduler(deps, post)` with `start()`, `stop()`, `refresh()` — posts each
  subscription's slots exactly once across replicas through `post(channel, digest)`.
- `bot.digest.cli.digest` — the `kubereach digest [--json]` click command.

This package module imports nothing, so pure modules (the renderers) can use `bot.digest.models`.
"""

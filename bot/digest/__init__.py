"""kubereach bot: scheduled network health digests.

A digest sweeps every node agent and the API (`sweep.py`), adds what the investigation history says
(`service.py`, which like `bot.history.service` takes a session and never commits), and marks
each problem new, still there or gone since the channel's previous digest
(`content.py`); `bot.render.digest` shows it. Public entry points:

- `bot.digest.flows.DigestDeps` (`DigestDeps.from_settings(settings, sweep=...)`) — what a digest needs.
- `bot.digest.schedule.DigestScheduler(deps, post)` with `start()`, `stop()`, `refresh()` — posts each
  subscription's slots exactly once across replicas through `post(channel, digest)`.

The `/reach digest …` command is `bot.slack.digest_command.handle`; the `kubereach digest [--json]`
command is `bot.digest_cli.digest`; the sweep over a real cluster is `bot.investigation.investigator_sweep`.

This package module imports nothing, so pure modules (the renderers) can use `bot.digest.models`.
"""

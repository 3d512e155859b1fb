"""Scheduled digests in the running Slack app: one `DigestScheduler` per `kubereach serve` process.

    scheduler = start_digests(deps)        # after build_deps: plans every stored subscription
    ...
    stop_digests(scheduler, grace_s)       # on shutdown: digests in flight finish or are released

`start_digests` wires the scheduler's `refresh` into `/reach digest …` (through `DigestDeps.on_change`),
so a subscription made, changed or turned off in Slack is planned at once, without a restart. The
scheduler posts with the app's `SlackPoster`; a digest Slack refused is recorded as failed.
"""

from __future__ import annotations

import dataclasses
import logging

from bot.digest.flows import DigestDeps
from bot.digest.models import Digest
from bot.digest.schedule import RESYNC_SECONDS, DigestScheduler
from bot.errors import KubereachError
from bot.render.digest import digest_blocks, digest_text
from bot.slack.flows import SlackDeps
from bot.slack.messaging import SlackPoster

log = logging.getLogger("kubereach.digest")


@dataclasses.dataclass(frozen=True)
class DigestPoster:
    """Posts one digest to its channel; raises when Slack did not take it (the run is then recorded failed)."""

    poster: SlackPoster

    def __call__(self, channel: str, digest: Digest) -> None:
        """Post `digest` in `channel` as a new message."""
        if self.poster.post(channel, digest_text(digest), digest_blocks(digest)) is None:
            raise KubereachError(f"Slack did not take the digest for {channel}", hint="see the Slack failures in the log")


def start_digests(deps: SlackDeps, *, resync_s: float = RESYNC_SECONDS) -> DigestScheduler | None:
    """Start scheduling every enabled subscription (None when digests are not set up in `deps`)."""
    if not isinstance(deps.digest, DigestDeps):
        return None
    scheduler = DigestScheduler(deps.digest, DigestPoster(deps.poster), resync_s=resync_s)
    deps.digest = dataclasses.replace(deps.digest, on_change=scheduler.refresh)
    scheduler.start()
    return scheduler


def stop_digests(scheduler: DigestScheduler | None, grace_s: float) -> int:
    """Stop scheduling; digests in flight may finish for `grace_s` s, the rest are released. Returns how many."""
    if scheduler is None:
        return 0
    return scheduler.stop(grace_s)

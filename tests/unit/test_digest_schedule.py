"""Slots: which instant a subscription's digest is due at, in its own timezone, and which slot a start catches up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.digest.schedule import latest_slot, missed_slot, slot_trigger
from bot.digest.service import SubscriptionView
from bot.history.enums import DigestCadence
from bot.history.service import Person


def subscription(
    cadence: DigestCadence = DigestCadence.DAILY,
    time_of_day: str = "09:00",
    timezone: str = "Europe/Berlin",
    weekday: int | None = None,
    created_at: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> SubscriptionView:
    return SubscriptionView(1, "C1", cadence, time_of_day, timezone, weekday, (), True, created_at, Person("U1", "ana"))


def test_daily_slot_is_local_time_in_winter_and_summer() -> None:
    trigger = slot_trigger(subscription())
    assert latest_slot(trigger, datetime(2026, 1, 15, 12, 0, tzinfo=UTC)) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert latest_slot(trigger, datetime(2026, 7, 15, 12, 0, tzinfo=UTC)) == datetime(2026, 7, 15, 7, 0, tzinfo=UTC)


def test_before_todays_time_the_latest_slot_is_yesterdays() -> None:
    trigger = slot_trigger(subscription())
    assert latest_slot(trigger, datetime(2026, 1, 15, 7, 59, tzinfo=UTC)) == datetime(2026, 1, 14, 8, 0, tzinfo=UTC)


def test_the_slot_instant_itself_is_its_own_latest_slot() -> None:
    trigger = slot_trigger(subscription())
    slot = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert latest_slot(trigger, slot) == slot


def test_weekly_slot_falls_on_its_weekday() -> None:
    trigger = slot_trigger(subscription(DigestCadence.WEEKLY, "16:30", "UTC", weekday=4))
    # Wednesday 2026-01-14 → the previous Friday, 2026-01-09
    assert latest_slot(trigger, datetime(2026, 1, 14, 12, 0, tzinfo=UTC)) == datetime(2026, 1, 9, 16, 30, tzinfo=UTC)


def test_across_the_spring_forward_day_slots_stay_at_local_nine() -> None:
    trigger = slot_trigger(subscription())
    # Europe/Berlin moves to summer time on 2026-03-29
    assert latest_slot(trigger, datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    assert latest_slot(trigger, datetime(2026, 3, 29, 23, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_a_start_after_downtime_catches_up_only_the_latest_missed_slot() -> None:
    now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    assert missed_slot(subscription(created_at=now - timedelta(days=10)), now) == datetime(2026, 1, 20, 8, 0, tzinfo=UTC)


def test_a_slot_before_the_subscription_existed_is_not_caught_up() -> None:
    now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    assert missed_slot(subscription(created_at=datetime(2026, 1, 20, 10, 0, tzinfo=UTC)), now) is None

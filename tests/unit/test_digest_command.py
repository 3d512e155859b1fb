"""The `/reach digest …` parser: every accepted form and a clear error for each wrong one."""

from __future__ import annotations

import pytest

from bot.digest.command import (
    DigestCommandError,
    DigestNow,
    ShowSubscription,
    Subscribe,
    Unsubscribe,
    describe,
    parse_digest_command,
)
from bot.history.enums import DigestCadence


def test_daily_with_time_zone_and_namespaces() -> None:
    assert parse_digest_command("daily 09:00 Europe/Berlin shop payments") == Subscribe(
        DigestCadence.DAILY, "09:00", "Europe/Berlin", None, ("shop", "payments")
    )


def test_leading_digest_word_and_single_digit_hour_are_accepted() -> None:
    assert parse_digest_command("digest daily 9:05 UTC") == Subscribe(DigestCadence.DAILY, "09:05", "UTC", None, ())


def test_weekly_defaults_to_monday() -> None:
    assert parse_digest_command("weekly 16:30 America/New_York") == Subscribe(
        DigestCadence.WEEKLY, "16:30", "America/New_York", 0, ()
    )


@pytest.mark.parametrize(("word", "day"), [("mon", 0), ("Fri", 4), ("sunday", 6), ("THURS", 3)])
def test_weekly_with_weekday(word: str, day: int) -> None:
    command = parse_digest_command(f"weekly {word} 08:00 Europe/Lisbon shop")
    assert command == Subscribe(DigestCadence.WEEKLY, "08:00", "Europe/Lisbon", day, ("shop",))


def test_off_now_and_show() -> None:
    assert parse_digest_command("off") == Unsubscribe()
    assert parse_digest_command("now") == DigestNow(())
    assert parse_digest_command("now shop,payments") == DigestNow(("shop", "payments"))
    assert parse_digest_command("") == ShowSubscription()
    assert parse_digest_command("digest") == ShowSubscription()


@pytest.mark.parametrize("bad", ["25:00", "09:60", "9", "nine", "09:0"])
def test_bad_time_says_so(bad: str) -> None:
    with pytest.raises(DigestCommandError, match=r"bad time") as caught:
        parse_digest_command(f"daily {bad} UTC")
    assert "HH:MM" in caught.value.message


@pytest.mark.parametrize("bad", ["Europe/Atlantis", "Mars/Olympus", "shop", "../etc/passwd"])
def test_unknown_timezone_says_so(bad: str) -> None:
    with pytest.raises(DigestCommandError, match=r"unknown timezone"):
        parse_digest_command(f"daily 09:00 {bad}")


def test_timezone_spelling_is_normalised() -> None:
    command = parse_digest_command("daily 09:00 europe/berlin")
    assert isinstance(command, Subscribe) and command.timezone == "Europe/Berlin"
    command = parse_digest_command("daily 09:00 utc")
    assert isinstance(command, Subscribe) and command.timezone == "UTC"


def test_missing_timezone_says_where_it_goes() -> None:
    with pytest.raises(DigestCommandError, match=r"needs a time zone"):
        parse_digest_command("daily 09:00")


def test_bad_weekday_says_so() -> None:
    with pytest.raises(DigestCommandError, match=r"bad weekday 'funday'"):
        parse_digest_command("weekly funday 09:00 UTC")


def test_unknown_verb_and_bad_namespace() -> None:
    with pytest.raises(DigestCommandError, match=r"unknown digest command 'hourly'"):
        parse_digest_command("hourly 09:00 UTC")
    with pytest.raises(DigestCommandError, match=r"not a namespace"):
        parse_digest_command("daily 09:00 UTC Shop_Prod")
    with pytest.raises(DigestCommandError, match=r"takes nothing"):
        parse_digest_command("off now")


def test_describe_reads_like_a_sentence() -> None:
    assert describe(DigestCadence.WEEKLY, "09:00", "Europe/Berlin", 4, ("shop",)) == (
        "every Friday at 09:00 Europe/Berlin for shop"
    )
    assert describe(DigestCadence.DAILY, "07:30", "UTC", None, ()) == "every day at 07:30 UTC for all namespaces"

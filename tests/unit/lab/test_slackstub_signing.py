"""The stand-in signs requests exactly as Slack does (Slack's documented example, and slack_sdk's verifier)."""

from __future__ import annotations

import time

from slack_sdk.signature import SignatureVerifier

from lab.slackstub.signing import sign

# Slack's "Verifying requests from Slack" worked example.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = 1531420618
DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_sign_reproduces_slacks_documented_example() -> None:
    assert sign(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE
    assert sign(DOC_SECRET, str(DOC_TIMESTAMP), DOC_BODY.encode()) == DOC_SIGNATURE


def test_sign_changes_with_body_timestamp_and_secret() -> None:
    assert sign(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY + "x") != DOC_SIGNATURE
    assert sign(DOC_SECRET, DOC_TIMESTAMP + 1, DOC_BODY) != DOC_SIGNATURE
    assert sign(DOC_SECRET + "x", DOC_TIMESTAMP, DOC_BODY) != DOC_SIGNATURE


def test_slack_sdk_signature_verifier_accepts_our_signature_and_rejects_a_forged_one() -> None:
    secret = "lab-signing-secret"
    body = '{"type":"event_callback","event":{"type":"app_mention","text":"<@UBOT> caf\u00e9"}}'
    now = int(time.time())
    verifier = SignatureVerifier(secret)
    good = {"x-slack-request-timestamp": str(now), "x-slack-signature": sign(secret, now, body)}
    forged = {"x-slack-request-timestamp": str(now), "x-slack-signature": sign("other-secret", now, body)}
    assert verifier.is_valid_request(body, good)
    assert not verifier.is_valid_request(body, forged)


def test_slack_sdk_signature_verifier_rejects_a_stale_timestamp_even_when_signed() -> None:
    secret = "lab-signing-secret"
    stale = int(time.time()) - 10 * 60
    verifier = SignatureVerifier(secret)
    headers = {"x-slack-request-timestamp": str(stale), "x-slack-signature": sign(secret, stale, "a=1")}
    assert not verifier.is_valid_request("a=1", headers)

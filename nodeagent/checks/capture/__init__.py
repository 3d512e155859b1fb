"""Bounded, read-only packet capture for a marked probe: a kernel filter compiled from validated
fields (`bpf`), header parsing (`headers`), and one capture set's sockets and loop (`session`)."""

from nodeagent.checks.capture.bpf import compile_filter
from nodeagent.checks.capture.headers import Headers, parse_headers
from nodeagent.checks.capture.model import (
    CapturedPacket,
    CaptureLimits,
    CaptureMatchSpec,
    CaptureOutcome,
    PointRequest,
    PointResult,
)
from nodeagent.checks.capture.session import CaptureSession, run_capture

__all__ = [
    "CaptureLimits",
    "CaptureMatchSpec",
    "CaptureOutcome",
    "CaptureSession",
    "CapturedPacket",
    "Headers",
    "PointRequest",
    "PointResult",
    "compile_filter",
    "parse_headers",
    "run_capture",
]

"""The path picture drawn from investigations recorded on the lab (`ask --json` with no fault, with
`overlay-down` on node-1, with `veth-down` on one source pod's node): the marked hop, the nodes, the
lanes side by side, trace counts, escaping, PNG of sane size, and the same bytes for the same result."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.playbook.models import Evidence, Finding, InvestigationResult, StepResult, StepStatus, Verdict
from bot.render.picture import picture_of, picture_png, picture_svg
from bot.verdicts import Hop, VerdictCode

RECORDED = Path(__file__).parent / "fixtures" / "pictures"
SVG = "{http://www.w3.org/2000/svg}"


def result_from_document(document: dict[str, Any]) -> InvestigationResult:
    """An `ask --json` document back into the result it was printed from."""
    verdict = document["verdict"]
    return InvestigationResult(
        id=document["id"],
        question=document["question"],
        source=document["source"],
        target=document["target"],
        verdict=Verdict(
            VerdictCode(verdict["code"]),
            verdict["summary"],
            verdict["node"],
            Hop(verdict["hop"]) if verdict["hop"] else None,
            tuple(verdict["remediation"]),
        ),
        steps=tuple(
            StepResult(
                s["name"],
                StepStatus(s["status"]),
                s["summary"],
                tuple(Evidence(e["kind"], e["summary"], e["node"], e["data"]) for e in s["evidence"]),
                s["duration_ms"],
                s["node"],
            )
            for s in document["steps"]
        ),
        findings=tuple(
            Finding(VerdictCode(f["code"]), f["summary"], f["node"], Hop(f["hop"]) if f["hop"] else None)
            for f in document["findings"]
        ),
        duration_ms=document["duration_ms"],
        started_at=datetime.fromisoformat(document["started_at"]),
        per_source=document["per_source"],
    )


def recorded(name: str) -> InvestigationResult:
    return result_from_document(json.loads((RECORDED / f"{name}.json").read_text()))


def points(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}g"))


def lanes(svg: str) -> dict[str, list[ET.Element]]:
    """node → the points of that node's lane, in path order."""
    root = ET.fromstring(svg)
    return {
        lane.attrib["data-node"]: [g for g in lane.iter(f"{SVG}g") if g.attrib.get("class") == "point"]
        for lane in root.iter(f"{SVG}g")
        if lane.attrib.get("class") == "lane"
    }


def marked(svg: str) -> list[tuple[str, str]]:
    """(lane node, point key) of every marked point."""
    return [(node, p.attrib["data-key"]) for node, ps in lanes(svg).items() for p in ps if p.attrib.get("data-marked")]


def texts(element: ET.Element) -> str:
    return " ".join(t.text or "" for t in element.iter(f"{SVG}text"))


def test_overlay_down_marks_the_overlay_of_the_node_the_verdict_names_and_greys_what_follows() -> None:
    result = recorded("overlay")
    svg = picture_svg(picture_of(result))
    by_node = lanes(svg)
    assert set(by_node) == {"node-1", "node-3"}
    assert result.verdict.node == "node-1"
    overlay = [p for p in by_node["node-1"] if p.attrib["data-key"] == "overlay"]
    assert [p.attrib.get("data-marked") for p in overlay] == ["true"]
    assert "flannel.1" in texts(overlay[0])
    keys = [p.attrib["data-key"] for p in by_node["node-1"]]
    after = keys[keys.index("overlay") + 1 :]
    assert after == ["underlay", "dest-node", "dest-pod"]
    assert all(p.attrib["data-state"] == "not-reached" for p in by_node["node-1"] if p.attrib["data-key"] in after)
    # node-3's pods break where their packets arrive at node-1, not on node-3's own overlay.
    assert sorted(marked(svg)) == [("node-1", "overlay"), ("node-3", "dest-node")]
    arrival = next(p for p in by_node["node-3"] if p.attrib["data-key"] == "dest-node")
    assert "cause on node-1" in texts(arrival)
    assert ET.fromstring(svg).attrib["data-verdict"] == "OVERLAY_DEVICE_DOWN"
    assert "OVERLAY_DEVICE_DOWN at underlay · node-1" in svg


def test_partial_failure_draws_the_failing_node_beside_the_working_one() -> None:
    result = recorded("veth")
    assert sorted(result.per_source.values()) == ["NO_FAULT_FOUND", "POD_INTERFACE_DOWN"]
    svg = picture_svg(picture_of(result))
    assert marked(svg) == [("node-3", "veth")]
    by_node = lanes(svg)
    healthy = by_node["node-1"]
    assert {p.attrib["data-state"] for p in healthy} == {"pass"}
    veth = next(p for p in by_node["node-3"] if p.attrib["data-key"] == "veth")
    assert "veth60694912 down" in texts(veth)
    # Each lane names its node, its source pod and its own outcome.
    heads = {
        lane.attrib["data-node"]: texts(lane).split(" ok")[0]
        for lane in ET.fromstring(svg).iter(f"{SVG}g")
        if lane.attrib.get("class") == "lane"
    }
    assert "POD_INTERFACE_DOWN" in heads["node-3"] and "NO_FAULT_FOUND" in heads["node-1"]


def test_healthy_path_marks_nothing_and_shows_nat_and_every_endpoint() -> None:
    svg = picture_svg(picture_of(recorded("ok")))
    assert marked(svg) == []
    for lane_points in lanes(svg).values():
        keys = [p.attrib["data-key"] for p in lane_points]
        assert keys == ["pod", "veth", "bridge", "node", "nat", "overlay", "underlay", "dest-node", "dest-pod"]
        nat = lane_points[keys.index("nat")]
        assert "VIP → 3 endpoint(s)" in texts(nat)
        assert texts(lane_points[-1]).count("✓") == 3
        assert {p.attrib["data-state"] for p in lane_points} == {"pass"}


def test_trace_counts_are_drawn_on_the_points_they_were_counted_at() -> None:
    result = recorded("overlay")
    netns = next(
        e.data["netns"]
        for s in result.steps
        for e in s.evidence
        if e.kind == "pod-network" and s.node == "node-1" and s.name.startswith("source")
    )
    trace = [
        {
            "node": "node-1",
            "netns": netns,
            "interface": "eth0",
            "direction": "out",
            "seen": True,
            "packets": 7,
            "first_seen_ms": 0.4,
            "note": "",
        },
        {
            "node": "node-1",
            "netns": "",
            "interface": "cni0",
            "direction": "in",
            "seen": True,
            "packets": 6,
            "first_seen_ms": 0.5,
            "note": "",
        },
        {
            "node": "node-1",
            "netns": "",
            "interface": "flannel.1",
            "direction": "out",
            "seen": False,
            "packets": 0,
            "first_seen_ms": None,
            "note": "down",
        },
        {
            "node": "node-9",
            "netns": "",
            "interface": "cni0",
            "direction": "in",
            "seen": True,
            "packets": 99,
            "first_seen_ms": 1.0,
            "note": "",
        },
    ]
    svg = picture_svg(picture_of(result, trace))
    node1 = {p.attrib["data-key"]: p for p in lanes(svg)["node-1"]}
    assert "eth0: 7 pkt" in texts(node1["pod"])
    assert "cni0: 6 pkt" in texts(node1["bridge"])
    assert "flannel.1: not seen" in texts(node1["overlay"])
    assert "99 pkt" not in svg  # another node's count lands on no point of these lanes
    assert "pkt" not in picture_svg(picture_of(result))


def test_text_from_the_cluster_and_from_people_is_escaped() -> None:
    result = recorded("veth")
    hostile = '<script>alert("x")</script>&'
    result = InvestigationResult(**{**result.__dict__, "source": hostile, "target": "svc/<b>api</b>"})
    svg = picture_svg(picture_of(result))
    ET.fromstring(svg)  # still well-formed
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("name", ["ok", "overlay", "veth"])
def test_png_is_of_sane_size_and_the_same_result_gives_the_same_bytes(name: str) -> None:
    first = picture_png(picture_of(recorded(name)))
    again = picture_png(picture_of(recorded(name)))
    assert first == again
    assert picture_svg(picture_of(recorded(name))) == picture_svg(picture_of(recorded(name)))
    width, height = _png_size(first)
    assert 720 <= width <= 2000 and 200 <= height <= 1200
    assert 10_000 < len(first) < 1_000_000


def test_a_verdict_before_any_probe_draws_no_lane_and_marks_the_api_badge() -> None:
    result = InvestigationResult(
        id="inv-1",
        question="why can't web reach nothing",
        source="deploy/web in shop",
        target="svc/nothing in shop",
        verdict=Verdict(VerdictCode.TARGET_NOT_FOUND, "no such service", None, Hop.API),
        steps=(StepResult("target: API", StepStatus.FAIL, "svc/nothing not found"),),
        findings=(),
        duration_ms=3.0,
        started_at=datetime(2026, 1, 1),
    )
    svg = picture_svg(picture_of(result))
    assert lanes(svg) == {}
    badge = [g for g in points(svg) if g.attrib.get("class") == "badge" and g.attrib.get("data-marked")]
    assert [b.attrib["data-hop"] for b in badge] == ["api"]
    assert re.search(r"no path was probed", svg)


def test_a_result_that_carries_a_trace_is_drawn_with_its_counts() -> None:
    result = recorded("overlay")
    rows = [
        {"node": "node-1", "netns": "", "interface": "cni0", "direction": "in", "seen": True, "packets": 3},
        {"node": "node-1", "netns": "", "interface": "flannel.1", "direction": "out", "seen": False, "packets": 0},
    ]
    traced = StepResult(
        "trace the packet",
        StepStatus.FAIL,
        "packets stop at flannel.1",
        evidence=(Evidence("trace", "packet trace", "node-1", {"rows": rows, "stop": "flannel.1"}),),
        node="node-1",
    )
    with_trace = dataclasses.replace(result, steps=(*result.steps, traced))
    node1 = {p.attrib["data-key"]: p for p in lanes(picture_svg(picture_of(with_trace)))["node-1"]}
    assert "cni0: 3 pkt" in texts(node1["bridge"])
    assert "flannel.1: not seen" in texts(node1["overlay"])

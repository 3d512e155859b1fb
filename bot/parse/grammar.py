"""The question grammar: from cleaned words to a `Question`, or a `ParseError` with the closest form.

The grammar, in the order it is applied::

    question   := [command] item*                        (noise words anywhere are dropped)
    item       := option | connective | phrase
    option     := ("-n" | "--namespace" | "namespace" | "ns") NAME | "in" ["the"] ["namespace"] NAME ["namespace"]
                | ("port" | "port:" | "port=") PORT | ("on" | "at") NUMBER | NUMBER["/"PROTO] | PROTO"/"NUMBER
                | ["/"]PROTO | CLOCK | NUMBER UNIT | STATUS          (times and HTTP status classes are dropped)
    connective := (FORWARD word | BACKWARD word)+        the last word decides the direction
    phrase     := KIND REFERENCE | REFERENCE [KIND] | KIND          (a kind alone is an error)
                | OUTSIDE+                                         (outside, internet, clients, …: one client)
                | phrase ["'s"] [BRIDGE*] ENTRY | ENTRY ("of"|"for") phrase | "nodeport" NUMBER
    ENTRY      := ("nodeport" | "node port" | "load balancer" | "lb" | "external ip" | …) [NUMBER] [("on"|"at") ["node"] NODE]
    REFERENCE  := [[NS "/"] KIND "/"] NAME[.NS[.svc[.DOMAIN]]] [":" PORT] ["/" PROTO] | IP | "[" IPv6 "]:" PORT | URL

This module holds that order and the rules on a question's two ends; each step has its own module:

1. `bot.parse.slack_text` and `bot.parse.lexer`: Slack markup off, then words.
2. `bot.parse.options`: the options, said once for the whole question (a bare number is a port;
   ``10:00``, ``10 minutes`` and ``5xx`` are times and status classes, not ports).
3. `bot.parse.phrases`: phrases and connectives; ``in NS`` bound to the name it follows; each phrase
   read by `bot.parse.references` (a URL's scheme gives the port when the URL has none: https, 443).
4. `bot.parse.roles`: exactly two phrases must remain, a source and a target; the connective between
   them says which is which.
5. Here: the two ends checked (traffic comes from pods, not services; a way in is a target; a client
   outside is a source), then the `Question`.

`bot.parse.ways_in` holds the rules of NodePorts, load balancers, external IPs and clients outside,
which steps 2, 3 and 5 apply; `bot.parse.findings` what the steps have found so far (options, skipped
words, problems), shared by all of them. Words are reserved (`bot.parse.vocabulary`): a noise word is
never a name on its own (``deploy/test`` names a workload called ``test``).
"""

from __future__ import annotations

from dataclasses import replace

from bot.parse.errors import EXAMPLE, SOURCE_EXAMPLE, ParseError, Unreadable, shown
from bot.parse.findings import Findings
from bot.parse.forms import Phrase
from bot.parse.lexer import lex
from bot.parse.models import OUTSIDE_NAME, Protocol, Question, Ref, RefKind, canonical_text, question_text
from bot.parse.options import take_options
from bot.parse.phrases import group_phrases, read_phrase
from bot.parse.references import ReferenceText, Shape
from bot.parse.roles import Readings, find_roles, settle
from bot.parse.slack_text import clean_slack_text
from bot.parse.vocabulary import COMMAND_WORDS, DIAGNOSIS_LEADS, RESERVED
from bot.parse.ways_in import entry_as_source, outside_as_target, port_beside_nodeport

MAX_QUESTION_LENGTH = 2000
"""Longest text the parser reads, in characters; longer text is refused before any parsing."""


def parse_question(text: str) -> Question:
    """Read a reachability question typed by a person (in Slack or at the CLI).

    Raises `ParseError` (a `bot.errors.BadInput`) for anything it cannot read, with the closest valid
    form built from what it understood and an example; it raises nothing else.
    """
    if len(text) > MAX_QUESTION_LENGTH:
        raise ParseError(
            f"The question is {len(text)} characters long; kubereach reads at most {MAX_QUESTION_LENGTH}. "
            "Ask about one source and one target.",
            closest_form=question_text(None, None),
            example=EXAMPLE,
        )
    return _read(text)


def _read(raw: str) -> Question:
    """Apply the steps in order, then check the two ends; the first problem met is the one raised."""
    findings = Findings(raw)
    words = lex(clean_slack_text(raw))
    if words and (words[0] in COMMAND_WORDS or words[0] in DIAGNOSIS_LEADS):
        findings.command_form = True
    items = group_phrases(take_options(words, findings), findings)
    readings = {id(item): read_phrase(item, findings) for item in items if isinstance(item, Phrase)}
    items = [item for item in items if not (isinstance(item, Phrase) and _not_a_name(readings[id(item)]))]
    roles = find_roles(items, readings, findings)
    source = settle(roles.source, readings, findings, as_source=True)
    target = settle(roles.target, readings, findings, as_source=False)
    if findings.about_dns and roles.problem is not None and (roles.source is None) != (roles.target is None):
        lone = settle(roles.source or roles.target, readings, findings, as_source=True)
        if isinstance(lone, Ref) and lone.kind.can_be_source and lone.kind is not RefKind.OUTSIDE:
            # "DNS lookups from frontend are failing": the one name is the client; ask the cluster DNS.
            source, target, roles = lone, _cluster_dns(findings), replace(roles, problem=None)
    elif findings.about_dns and roles.source is None and roles.target is None and findings.namespace is not None:
        # "nslookup fails in frontend": the only name was read as a namespace; it is the client.
        source, target, roles = Ref(RefKind.WORKLOAD, findings.namespace), _cluster_dns(findings), replace(roles, problem=None)
        findings.namespace = None
    problems = [*findings.problems]
    if roles.problem is not None:
        problems.append(roles.problem)
    if source is None and roles.from_outside and isinstance(target, Ref):
        source = Ref(RefKind.OUTSIDE, OUTSIDE_NAME)  # a way in asked about alone: from a client outside
    closest_source = source
    if isinstance(source, Ref) and source.entry is None and not (source.kind.can_be_source or source.kind.sends_from_pods):
        problems.append(_source_kind_problem(source))
        closest_source = None
    elif isinstance(source, Ref) and source.entry is not None:
        problems.append(entry_as_source(source, source.entry))
        closest_source = None
    other_port = findings.port if findings.port is not None else findings.port_name
    if isinstance(target, Ref) and target.kind is RefKind.NODEPORT and other_port is not None:
        problems.append(port_beside_nodeport(target, other_port))
        findings.port = findings.port_name = None
    if isinstance(target, Ref) and target.kind is RefKind.NAMESPACE:
        problems.append(
            Unreadable(
                f"The target ns/{shown(target.name)} is a whole namespace: name a service or a pod in it "
                f"(e.g. svc/api in {shown(target.name)}).",
                f"ns/{target.name}",
                example=EXAMPLE,
            )
        )
        target = None
    elif isinstance(target, Ref) and not target.kind.can_be_target:
        problems.append(outside_as_target())
        target = None
    if problems:
        raise _error(problems[0], closest_source, target, findings)
    if not isinstance(source, Ref) or not isinstance(target, Ref):  # pragma: no cover - roles guarantee
        raise _error(Unreadable("Could not find both a source and a target.", None), source, target, findings)
    return _question(
        source,
        target,
        findings,
        _alternatives(roles.source_others, readings, findings, as_source=True),
        _alternatives(roles.target_others, readings, findings, as_source=False),
    )


def _alternatives(phrases: tuple[Phrase, ...], readings: Readings, findings: Findings, *, as_source: bool) -> tuple[Ref, ...]:
    """The other bare words of a side, as references (they are bare: no port or namespace to settle)."""
    settled = (settle(phrase, readings, findings, as_source=as_source) for phrase in phrases)
    return tuple(ref for ref in settled if isinstance(ref, Ref))


def _not_a_name(reading: ReferenceText | str) -> bool:
    """A bare reference whose name or namespace would not be a name written alone: a word of the grammar
    (``over/udp``, ``by:80``), or an option (``udp/53``, ``503s/udp``). Without its kind it is never a
    name (``deploy/over`` is one), so that the question's canonical text reads back the same."""
    if isinstance(reading, str) or reading.shape is not Shape.NAME or reading.kind is not None:
        return False
    return any(
        part in RESERVED or take_options([part], Findings(part)) != [part] for part in (reading.name, reading.namespace) if part
    )


CLUSTER_DNS = Ref(RefKind.SERVICE, "kube-dns", "kube-system", dns_name="kube-dns.kube-system")
"""The cluster DNS service as kubeadm and most distributions name it: the target of a question about
name resolution that names only its client. Written as a DNS name so that the lookup is made too."""


def _cluster_dns(findings: Findings) -> Ref:
    """The cluster DNS as the target, on 53/UDP unless the question said otherwise."""
    if findings.port is None and findings.port_name is None:
        findings.port = 53
    if findings.protocol is None:
        findings.protocol = Protocol.UDP
    return CLUSTER_DNS


def _question(
    source: Ref,
    target: Ref,
    findings: Findings,
    source_alternatives: tuple[Ref, ...] = (),
    target_alternatives: tuple[Ref, ...] = (),
) -> Question:
    """The question read, with its normalized text (what ``ask --json`` echoes as ``read_as``)."""
    normalized = canonical_text(
        source,
        target,
        port=findings.port,
        port_name=findings.port_name,
        protocol=findings.protocol,
        namespace=findings.namespace,
        trace=findings.trace,
        intermittent=findings.intermittent,
    )
    return Question(
        source=source,
        target=target,
        port=findings.port,
        port_name=findings.port_name,
        protocol=findings.protocol,
        namespace=findings.namespace,
        raw=findings.raw,
        normalized=normalized,
        ignored=tuple(findings.ignored),
        trace=findings.trace,
        intermittent=findings.intermittent,
        source_alternatives=source_alternatives,
        target_alternatives=target_alternatives,
    )


def _error(problem: Unreadable, source: Ref | str | None, target: Ref | str | None, findings: Findings) -> ParseError:
    """The `ParseError` for a problem, with the closest form built from what was understood."""
    closest = question_text(
        source,
        target,
        port="?" if findings.port_unreadable else findings.port,
        port_name=findings.port_name,
        protocol=findings.protocol,
        namespace=findings.namespace,
    )
    return ParseError(problem.message, closest_form=closest, example=problem.example or EXAMPLE, part=problem.part)


def _source_kind_problem(source: Ref) -> Unreadable:
    """The problem with a source that traffic cannot start from: a name outside the cluster (a service
    stands for the pods it selects)."""
    written = source.display()
    return Unreadable(
        f"The source {shown(written)} is a name outside the cluster, but traffic comes from pods: pick a pod "
        "or a workload as the source.",
        written,
        example=SOURCE_EXAMPLE,
    )

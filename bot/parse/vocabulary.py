"""The words of the grammar: connectives with their direction, kinds, option keywords and noise.

Every table is explicit, misspellings included, so the parser stays deterministic: a word means
what its table says, never what it is "close to". A word in `NOISE` is never read as a name; to
name a workload called ``test``, write it with a kind prefix (``deploy/test``, ``svc/test``).
"""

from __future__ import annotations

from enum import Enum

from bot.parse.models import EntryKind, Protocol, RefKind


class Direction(Enum):
    """Which way a connective points between the names around it."""

    FORWARD = "forward"
    """``X to Y``, ``X -> Y``, ``X can't reach Y``: the name before is the source."""
    BACKWARD = "backward"
    """``Y from X``, ``Y reachable by X``, ``Y <- X``: the name before is the target."""


FORWARD_WORDS: frozenset[str] = frozenset(
    {
        "->", ">", "to", "into", "toward", "towards", "and",
        # reach
        "reach", "reaches", "reaching", "reached", "reachs", "reachh", "reahc", "rech", "raech", "reech",
        "reac", "rach", "reacj", "recah", "reacing", "reachin",
        # talk
        "talk", "talks", "talking", "talked", "tlak", "takl", "tak", "tlk", "talkk", "tlaking", "taling",
        # connect
        "connect", "connects", "connecting", "connected", "conect", "conects", "conecting", "connet",
        "conenct", "connnect", "connct", "cnnect", "connec", "conncet", "cnonect",
        # other verbs of reaching something
        "access", "accesses", "accessing", "accessed", "acess", "acces",
        "hit", "hits", "hitting", "call", "calls", "calling", "called",
        "ping", "pings", "pinging", "pinged", "curl", "curls", "curling",
        "resolve", "resolves", "resolving", "resolved",
        "send", "sends", "sending", "sent", "contact", "contacts", "contacting",
        "communicate", "communicates", "communicating", "speak", "speaks", "speaking",
        "see", "sees", "go", "goes", "going", "open", "opens", "opening",
        "wait", "waits", "waiting",
        # what clients do to servers ("prometheus can't scrape api:9090", "the worker polls redis")
        "scrape", "scrapes", "scraping", "scraped", "query", "queries", "querying", "queried",
        "fetch", "fetches", "fetching", "fetched", "poll", "polls", "polling", "polled",
        "push", "pushes", "pushing", "pushed", "upload", "uploads", "uploading",
        "wget", "telnet", "netcat", "grpcurl",
        "dialing", "dials", "dialed",
    }
)  # fmt: skip

BACKWARD_WORDS: frozenset[str] = frozenset(
    {
        "<-", "from", "by",
        "reachable", "rechable", "reacheable", "reachible", "reahcable", "unreachable", "unreachble",
        "accessible", "inaccessible", "routable", "unroutable",
        # "is redis down for web?": the name after "for" is where traffic starts
        "for",
    }
)  # fmt: skip

RECEIVING_WORDS: frozenset[str] = frozenset(
    {
        "get", "gets", "getting", "got", "receive", "receives", "receiving", "received",
        "read", "reads", "reading", "pull", "pulls", "pulling", "pulled",
        "download", "downloads", "downloading", "downloaded",
    }
)  # fmt: skip
"""Words after which ``from`` names the server: ``frontend gets connection refused from api``, ``the
worker can't pull images from registry.example.com`` (the client comes first)."""

ANSWERING_WORDS: frozenset[str] = frozenset(
    {
        "return", "returns", "returning", "returned", "respond", "responds", "responding", "responded",
        "answer", "answers", "answering", "answered", "reply", "replies", "replying", "replied",
        "serve", "serves", "serving", "served",
    }
)  # fmt: skip
"""Words after which ``to`` names the client: ``api returns 502 to frontend``, ``redis answers
resets to the worker`` (the server comes first)."""

RECEIVED_TRAFFIC: frozenset[str] = frozenset(
    {"traffic", "request", "requests", "connection", "connections", "call", "calls", "queries", "packets", "hits"}
)
"""What a server receives from its clients: ``api gets requests from frontend`` keeps ``from`` backward
(unless an error word says it is an answer: ``connection refused``)."""

RECEIVED_ERRORS: frozenset[str] = frozenset(
    {
        "refused", "reset", "resets", "rst", "timeout", "timeouts", "timed", "error", "errors", "failures",
        "eof", "econnrefused", "econnreset", "etimedout", "nxdomain", "servfail", "responses", "response",
        "answers", "nothing", "garbage", "denied", "rejected", "unavailable",
    }
)  # fmt: skip
"""Words that make what is received an answer, so the one it comes from is the server."""

DNS_WORDS: frozenset[str] = frozenset(
    {"dns", "nslookup", "dig", "lookup", "lookups", "resolution", "resolv.conf", "resolver", "resolvers"}
)
"""Words that make a question about name resolution: with a single name, that name is the client and
the target is the cluster DNS (``DNS lookups from frontend are failing``). Never names on their own."""

DNS_VERBS: frozenset[str] = frozenset({"resolve", "resolves", "resolving", "resolved"})
"""Connectives that also say the question is about name resolution (``frontend can't resolve anything``)."""

BLOCKING_WORDS: frozenset[str] = frozenset(
    {
        "block", "blocks", "blocking", "blocked", "prevent", "prevents", "preventing", "prevented",
        "stop", "stops", "stopping", "deny", "denies", "denying", "denied",
    }
)  # fmt: skip
"""Words after which ``X from Y`` keeps X as the source: ``a policy blocking frontend from api``."""

STATUS_FOLLOWERS: frozenset[str] = frozenset({"from", "errors", "error", "responses", "response", "status", "codes"})
"""Words after which an HTTP status number is not a port: ``504 from api``, ``502 errors``."""

STATUS_LEADS: frozenset[str] = frozenset(
    {
        "with", "return", "returns", "returned", "returning", "http", "status", "code", "throw", "throws",
        "throwing", "get", "gets", "got", "getting", "answer", "answers", "answered", "answering", "a",
    }
)  # fmt: skip
"""Words after which a number from 100 to 599 is an HTTP status, not a port (``fails with 504``)."""

DIAGNOSIS_LEADS: frozenset[str] = frozenset({"check", "test", "debug", "diagnose", "investigate", "verify"})
"""Leading words after which two bare names read as ``SOURCE TARGET``, as after ``/reach``
(``check connectivity frontend api``)."""

KEEPS_DIRECTION: frozenset[str] = frozenset({"for"})
"""Connective words that only set a direction on their own: "waiting for" stays forward."""

KIND_WORDS: dict[str, RefKind] = {
    "pod": RefKind.POD,
    "pods": RefKind.POD,
    "po": RefKind.POD,
    "svc": RefKind.SERVICE,
    "svcs": RefKind.SERVICE,
    "service": RefKind.SERVICE,
    "services": RefKind.SERVICE,
    "deploy": RefKind.DEPLOYMENT,
    "deploys": RefKind.DEPLOYMENT,
    "deployment": RefKind.DEPLOYMENT,
    "deployments": RefKind.DEPLOYMENT,
    "sts": RefKind.STATEFULSET,
    "statefulset": RefKind.STATEFULSET,
    "statefulsets": RefKind.STATEFULSET,
    "ds": RefKind.DAEMONSET,
    "daemonset": RefKind.DAEMONSET,
    "daemonsets": RefKind.DAEMONSET,
    "node": RefKind.NODE,
    "nodes": RefKind.NODE,
}
"""Kind words that may stand alone before or after a name (``pod web``, ``the api service``)."""

KIND_PREFIXES: dict[str, RefKind] = {
    **KIND_WORDS,
    "no": RefKind.NODE,
    "workload": RefKind.WORKLOAD,
    "deployment.apps": RefKind.DEPLOYMENT,
    "statefulset.apps": RefKind.STATEFULSET,
    "daemonset.apps": RefKind.DAEMONSET,
    "ns": RefKind.NAMESPACE,
    "namespace": RefKind.NAMESPACE,
}
"""Kinds accepted before a slash (``svc/api``, ``shop/deploy/web``, ``deployment.apps/web``, ``ns/shop``:
every pod of the namespace)."""

PROTOCOL_WORDS: dict[str, Protocol] = {
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "sctp": Protocol.SCTP,
}

PORT_WORDS: frozenset[str] = frozenset({"port", "ports", "prot", "porrt", "pott"})
"""Words that take the port after them (``port 8080``, ``port http``)."""

PORT_PREPOSITIONS: frozenset[str] = frozenset({"on", "at"})
"""Words that take a port number after them (``on 8080``); otherwise they are noise."""

NAMESPACE_FLAGS: frozenset[str] = frozenset({"-n", "--namespace", "--ns", "namespace", "ns"})
"""Words that take a namespace after them (``-n shop``, ``namespace shop``)."""

TRACE_WORDS: frozenset[str] = frozenset({"trace", "traceflow", "follow"})
"""Words that ask for a path trace (``trace frontend → api:8080``); they are never names."""

INTERMITTENT_WORDS: frozenset[str] = frozenset(
    {
        "intermittent", "intermittently", "flaky", "flakey", "flaking", "flapping", "sometimes",
        "occasionally", "sporadic", "sporadically", "randomly", "unreliable", "lossy",
    }
)  # fmt: skip
"""Words that describe a failure that comes and goes: the trace repeats its probe to measure loss."""

OUTSIDE_WORDS: frozenset[str] = frozenset(
    {"outside", "internet", "external", "externally", "client", "clients", "world", "offcluster", "off-cluster"}
)
"""Words that name a client outside the cluster (``from outside``, ``the internet``, ``external
traffic``, ``clients``); several in a row are one client (``the outside world``). To name a workload
called ``clients``, write it with a kind (``deploy/clients``)."""

ENTRY_WORDS: dict[str, EntryKind] = {
    "nodeport": EntryKind.NODEPORT,
    "nodeports": EntryKind.NODEPORT,
    "node-port": EntryKind.NODEPORT,
    "node-ports": EntryKind.NODEPORT,
    "nodeprot": EntryKind.NODEPORT,
    "loadbalancer": EntryKind.LOAD_BALANCER,
    "load-balancer": EntryKind.LOAD_BALANCER,
    "loadbalancers": EntryKind.LOAD_BALANCER,
    "load-balancers": EntryKind.LOAD_BALANCER,
    "lb": EntryKind.LOAD_BALANCER,
    "lbs": EntryKind.LOAD_BALANCER,
    "external-ip": EntryKind.EXTERNAL_IP,
    "external-ips": EntryKind.EXTERNAL_IP,
    "externalip": EntryKind.EXTERNAL_IP,
    "externalips": EntryKind.EXTERNAL_IP,
}
"""One-word names of a way into the cluster (``nodeport 30080``, ``web's lb``, ``external-ip``)."""

ENTRY_PAIRS: dict[tuple[str, str], EntryKind] = {
    ("node", "port"): EntryKind.NODEPORT,
    ("node", "ports"): EntryKind.NODEPORT,
    ("load", "balancer"): EntryKind.LOAD_BALANCER,
    ("load", "balancers"): EntryKind.LOAD_BALANCER,
    ("external", "ip"): EntryKind.EXTERNAL_IP,
    ("external", "ips"): EntryKind.EXTERNAL_IP,
    ("external", "address"): EntryKind.EXTERNAL_IP,
    ("external", "addresses"): EntryKind.EXTERNAL_IP,
    ("ingress", "ip"): EntryKind.LOAD_BALANCER,
}
"""Two-word names of a way in (``load balancer``, ``external IP``, ``node port``)."""

ENTRY_BRIDGE: frozenset[str] = frozenset({"on", "at", "via", "through", "using", "over", "its", "their", "the", "a", "an"})
"""Words that may stand between a service and its way in (``web via its load balancer``, ``svc web
on nodeport 30081``)."""

ENTRY_NODE_PREPOSITIONS: frozenset[str] = frozenset({"on", "at", "via", "through"})
"""Words after a way in that take the node it is asked on (``nodeport 30080 on node-2``, ``via node-3``)."""

ENTRY_OF: frozenset[str] = frozenset({"of", "for"})
"""Words after an entry that tie it to the name after them (``the nodeport of web``)."""

COMMAND_WORDS: frozenset[str] = frozenset({"/reach", "/kubereach"})
"""A leading slash command: after it, two bare names read as ``SOURCE TARGET``."""

NOISE: frozenset[str] = frozenset(
    {
        # addressing the bot, politeness, urgency
        "hey", "hi", "hello", "yo", "please", "pls", "plz", "plss", "kindly", "thanks", "thank", "thx", "ty",
        "bot", "kubereach", "@kubereach", "@reach", "urgent", "asap", "quick", "question", "help",
        # time
        "still", "again", "anymore", "now", "suddenly", "today", "currently", "sometimes", "intermittently",
        "randomly", "always", "never", "ever", "yet", "already", "recently", "since",
        # question words, auxiliaries, negation
        "why", "whys", "how", "what", "whats", "whether", "if", "is", "isnt", "are", "arent", "was", "wasnt",
        "were", "werent", "be", "been", "being", "does", "doesnt", "do", "dont", "did", "didnt",
        "can", "cant", "cannot", "cannt", "cnat", "cna", "canot", "could", "couldnt", "would", "wouldnt",
        "will", "wont", "should", "shouldnt", "might", "may", "must", "not", "no", "unable", "able",
        "fail", "fails", "failing", "failed", "failure", "failures", "anyone", "anybody", "someone", "somebody",
        # pronouns, articles, fillers
        "i", "we", "me", "us", "you", "my", "our", "your", "it", "its", "this", "that", "these", "those",
        "they", "them", "he", "she", "him", "her",
        "there", "here", "the", "a", "an", "any", "some", "just", "really", "also", "even", "only", "all",
        "so", "but", "or", "then", "which", "who", "know", "tell", "wonder", "wondering", "figure",
        "find", "need", "needs", "want", "wants", "trying", "try", "tries", "tried", "seems", "seem",
        "seemed", "looks", "look", "like", "get", "gets", "getting", "got", "keep", "keeps", "kept",
        "have", "has", "had", "having", "issue", "issues", "problem", "problems", "error", "errors",
        "broken", "down", "working", "work", "works", "worked", "ok", "okay", "ah", "oh", "um", "uh",
        "hmm", "lol", "when", "while", "after", "before", "during", "anything", "something", "else",
        # diagnosis words
        "check", "checking", "test", "testing", "debug", "debugging", "diagnose", "investigate",
        "verify", "connectivity", "reachability", "connection", "connections", "traffic", "network",
        "networking", "packet", "packets", "request", "requests", "blocked", "dropped", "dropping",
        "drops", "refused", "denied", "rejected", "reset", "timeout", "timeouts", "time", "times",
        "timed", "timing", "out", "hangs", "hanging", "hang", "stuck", "slow", "between",
        # words of pasted error messages ("dial tcp ...: i/o timeout", "no route to host")
        "dial", "i/o", "route", "routes", "host", "econnrefused", "etimedout", "peer",
        # prepositions without a direction
        "over", "via", "using", "use", "with", "through", "on", "at", "of", "in",
        "proto", "protocol", "address", "ip", "port-forward",
        # how incident channels talk ("seeing intermittent resets", "latency is up", "since 09:45 utc")
        "up", "seeing", "latency", "loss", "everything", "intermittent", "resets",
        "flaky", "flapping", "dead", "unavailable", "unhealthy", "degraded", "unresponsive", "offline",
        "econnreset", "ehostunreach", "enetunreach", "spiking", "elevated", "outage", "ago",
        "lost", "lose", "loses", "losing", "high", "low", "huge", "big", "large", "small",
        "health", "healthcheck", "healthchecks", "checks", "liveness", "readiness", "probe", "probes",
        # what a server does to a client, and where people read it ("frontend logs show …")
        "rejects", "reject", "rejecting", "refuses", "refuse", "refusing", "drop", "logs", "log", "shows", "show",
        "utc", "gmt", "cet", "cest", "pst", "pdt", "est", "edt", "minutes", "mins", "seconds", "secs", "hours",
        "hrs", "longer",
        # what people suspect ("is a network policy blocking frontend from api?", "the firewall drops it")
        "policy", "policies", "networkpolicy", "networkpolicies", "netpol", "netpols", "firewall", "firewalls",
        "block", "blocks", "blocking", "prevent", "prevents", "preventing", "prevented", "stop", "stops", "stopping",
        "deny", "denies", "denying", "allow", "allows", "allowed", "allowing",
    }
)  # fmt: skip

TARGET_STATE_WORDS: frozenset[str] = frozenset(
    {"down", "dead", "unavailable", "unhealthy", "degraded", "unresponsive", "offline", "flaky", "flapping"}
)
"""Words that say a lone name is the thing that fails ("is redis down?"): it is the target."""

TIME_UNITS: frozenset[str] = frozenset(
    {
        "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minute", "minutes",
        "h", "hr", "hrs", "hour", "hours", "d", "day", "days",
    }
)  # fmt: skip
"""Units after a number that make it a duration ("for 10 minutes"), not a port."""

TIME_PREPOSITIONS: frozenset[str] = frozenset({"since", "after", "before", "during"})
"""Words after which a lone kind word is an event, not a reference ("since the deploy")."""

RESERVED: frozenset[str] = (
    FORWARD_WORDS
    | BACKWARD_WORDS
    | frozenset(KIND_WORDS)
    | frozenset(PROTOCOL_WORDS)
    | PORT_WORDS
    | NAMESPACE_FLAGS
    | COMMAND_WORDS
    | NOISE
    | OUTSIDE_WORDS
    | frozenset(ENTRY_WORDS)
    | RECEIVING_WORDS
    | ANSWERING_WORDS
    | DNS_WORDS
)
"""Every word with a meaning in the grammar: none of them is read as a name on its own."""

ARTICLES: frozenset[str] = frozenset({"the", "a", "an"})

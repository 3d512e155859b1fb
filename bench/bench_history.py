"""Benchmark the investigation history: search latency per query shape, and the cost of recording.

    python bench/bench_history.py --sqlite-rows 100000 --pg-rows 1000000

For each backend it builds a fresh database (a temp SQLite file; a throwaway PostgreSQL database that
is dropped at the end), migrates it, loads realistic investigations in bulk (executemany on SQLite,
COPY on PostgreSQL), then times `search_investigations` for each query shape (p50/p99 over
``--queries`` random queries) next to a reference: the same words found by a plain LIKE scan, what
you would get without the full-text index. Last, it times recording one whole investigation (start,
steps committed one by one, finish) on the loaded database. Row counts of 0 skip a backend.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session

from bot.heap import settle_heap
from bot.history import service
from bot.history.db import create_history_engine, session_factory, upgrade
from bot.history.enums import Origin
from bot.history.ids import new_investigation_id
from bot.history.search import SearchFilters, rebuild_search_index, search_investigations
from bot.playbook.models import Evidence, Hop, StepResult, StepStatus, Verdict, VerdictCode

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HISTORY_DAYS = 180
NAMESPACES = [
    "shop", "payments", "cache", "edge", "batch", "auth", "search", "orders", "billing", "inventory",
    "ml", "data", "monitoring", "logging", "ingress", "mesh", "cart", "ads", "media", "notify",
]  # fmt: skip
WORKLOAD_STEMS = [
    "web", "api", "frontend", "checkout", "redis", "postgres", "kafka", "worker", "gateway", "auth",
    "catalog", "ledger", "indexer", "scheduler", "mailer", "uploader", "resizer", "ranker", "session", "cdn",
]  # fmt: skip
NODES = [f"node-{index}" for index in range(1, 61)]
PEOPLE = [(f"U{index:04d}", name) for index, name in enumerate(
    ["ana", "bob", "chen", "dara", "eli", "fatma", "gus", "hana", "ivan", "jo", "kofi", "lena", "mo", "nia",
     "omar", "pia", "quinn", "ravi", "sara", "tom", "uma", "vik", "wen", "xia", "yan", "zoe"], start=1)]  # fmt: skip
CHANNELS = [f"C0{name.upper()}" for name in ("incident", "shop", "payments", "platform", "sre", "oncall", "ml")]
VERDICT_WEIGHTS = {
    VerdictCode.NO_FAULT_FOUND: 20, VerdictCode.SERVICE_NO_ENDPOINTS: 14, VerdictCode.NETWORK_POLICY_DENIES_INGRESS: 10,
    VerdictCode.DNS_RESOLUTION_FAILED: 9, VerdictCode.SERVICE_ENDPOINTS_NOT_READY: 8, VerdictCode.DESTINATION_NOT_LISTENING: 7,
    VerdictCode.SERVICE_PORT_MISMATCH: 6, VerdictCode.NETWORK_POLICY_DENIES_EGRESS: 5, VerdictCode.CONNTRACK_TABLE_FULL: 3,
    VerdictCode.MTU_MISMATCH: 3, VerdictCode.KUBE_PROXY_RULES_STALE: 3, VerdictCode.NODE_ROUTE_MISSING: 2,
    VerdictCode.CONNTRACK_STALE_ENTRY: 2, VerdictCode.AGENT_UNREACHABLE: 2, VerdictCode.SOURCE_NOT_FOUND: 2,
    VerdictCode.FORWARD_CHAIN_DROPS: 1, VerdictCode.OVERLAY_DEVICE_DOWN: 1, VerdictCode.UNDETERMINED: 2,
}  # fmt: skip
STEP_TEMPLATES = [
    ("resolve-names", "api-lookup", "resolved {w} to {n} pods", {"pods": "{n}", "phase": "Running"}),
    ("endpoints", "endpoint-slices", "{n} of {m} endpoints ready", {"ready": "{n}", "selector": "app={w}"}),
    ("dns", "dns-query", "{w}.{ns}.svc answered {rcode}", {"rcode": "{rcode}", "server": "10.96.0.10"}),
    ("policy", "network-policy", "policy deny-{w} selects the pod", {"policy": "deny-{w}", "direction": "ingress"}),
    ("route", "route-lookup", "route to 10.244.{n}.0/24 via {dev}", {"dev": "{dev}", "errno": "{errno}"}),
    ("nat", "iptables-save", "KUBE-SVC chain for {w} has {n} endpoints", {"chain": "KUBE-SVC-{h}", "targets": "{n}"}),
    ("conntrack", "conntrack", "nf_conntrack_count {c} of 262144", {"count": "{c}", "max": 262144}),
    ("mtu", "link", "{dev} mtu {mtu}", {"device": "{dev}", "mtu": "{mtu}"}),
    ("probe", "tcp-probe", "connect to 10.96.{n}.{m}:8080 {errno}", {"errno": "{errno}", "port": 8080}),
    ("sockets", "sock-diag", "nothing listens on :{port} in {w}", {"listening": [], "port": "{port}"}),
]
RECORD_SHAPE = "record 1 investigation"
BENCH_DATABASE = re.compile(r"kubereach_bench_[a-z0-9_]{1,40}")
"""The names a benchmark database may have (``--pg-keep``, ``--pg-drop``): never anyone else's."""
REFERENCE_REPEAT = 10
"""The LIKE scans are slow by nature; a few runs show their cost."""
FREE_TEXT_WORDS = ["ENETUNREACH", "ECONNREFUSED", "NXDOMAIN", "vxlan.calico", "flannel.1", "SERVFAIL", "ETIMEDOUT"]


@dataclass(frozen=True)
class Timing:
    """Latency of one query shape on one backend."""

    backend: str
    rows: int
    shape: str
    p50_ms: float
    p99_ms: float
    mean_hits: float


class Generator:
    """Realistic rows from a seeded random source: skewed names, verdicts, nodes and evidence words."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.workloads = [
            (ns, f"{stem}-{ns}" if self.random.random() < 0.3 else stem) for ns in NAMESPACES for stem in WORKLOAD_STEMS
        ]
        self.verdicts = list(VERDICT_WEIGHTS)
        self.weights = list(VERDICT_WEIGHTS.values())
        self.evidence_pool = [self._evidence() for _ in range(5000)]

    def _evidence(self) -> tuple[str, str, str]:
        name, kind, summary, data = self.random.choice(STEP_TEMPLATES)
        values = {
            "w": self.random.choice(WORKLOAD_STEMS),
            "ns": self.random.choice(NAMESPACES),
            "n": self.random.randint(0, 9),
            "m": self.random.randint(1, 9),
            "rcode": self.random.choice(["NOERROR", "NXDOMAIN", "SERVFAIL"]),
            "dev": self.random.choice(["flannel.1", "vxlan.calico", "cni0", "eth0", "tunl0"]),
            "errno": self.random.choice(["ENETUNREACH", "ECONNREFUSED", "ETIMEDOUT", "ok"]),
            "h": uuid.UUID(int=self.random.getrandbits(128)).hex[:16].upper(),
            "c": self.random.randint(1000, 262144),
            "mtu": self.random.choice([1400, 1450, 1500, 8950]),
            "port": self.random.choice([80, 443, 5432, 6379, 8080]),
        }
        rendered = summary.format(**values)
        rendered_data = {key: (value.format(**values) if isinstance(value, str) else value) for key, value in data.items()}
        node = self.random.choice(NODES)
        evidence = json.dumps([{"kind": kind, "summary": rendered, "node": node, "data": rendered_data}])
        return name, rendered, evidence

    def investigation(self, pk: int) -> dict[str, Any]:
        """One finished investigation row (values as the database stores them)."""
        source_ns, source = self.random.choice(self.workloads)
        target_ns, target = self.random.choice(self.workloads)
        started = NOW - timedelta(seconds=self.random.random() * HISTORY_DAYS * 86400)
        code = self.random.choices(self.verdicts, self.weights)[0]
        user_id, user_name = self.random.choice(PEOPLE)
        node = self.random.choice(NODES) if code not in (VerdictCode.NO_FAULT_FOUND, VerdictCode.SOURCE_NOT_FOUND) else None
        return {
            "id": pk,
            "public_id": new_investigation_id(started),
            "question": f"why can't {source} reach {target} in {target_ns}?",
            "asked_by_id": user_id,
            "asked_by_name": user_name,
            "channel": self.random.choice(CHANNELS),
            "thread_ts": f"{started.timestamp():.6f}",
            "origin": "slack",
            "source_kind": "deployment",
            "source_namespace": source_ns,
            "source_name": source,
            "source_display": f"deployment {source_ns}/{source}",
            "target_kind": "service",
            "target_namespace": target_ns,
            "target_name": target,
            "target_display": f"service {target_ns}/{target}:8080",
            "namespaces": json.dumps(sorted({source_ns, target_ns})),
            "status": "done",
            "verdict_code": code.value,
            "node": node,
            "hop": Hop.SERVICE_NAT.value,
            "summary": f"{code.value.replace('_', ' ').lower()} between {source} and {target}",
            "remediation": json.dumps(["look at the evidence"]),
            "started_at": started,
            "finished_at": started + timedelta(seconds=2),
            "duration_ms": round(self.random.uniform(200, 4000), 1),
            "owner": "bench:1",
        }

    def steps(self, pk: int, first_step_pk: int, count: int) -> list[dict[str, Any]]:
        """`count` step rows of investigation `pk`."""
        rows = []
        for order in range(count):
            name, summary, evidence = self.random.choice(self.evidence_pool)
            rows.append(
                {
                    "id": first_step_pk + order,
                    "investigation_id": pk,
                    "position": order + 1,
                    "name": name,
                    "status": "fail" if order == count - 1 else "pass",
                    "summary": summary,
                    "evidence": evidence,
                    "node": self.random.choice(NODES),
                    "duration_ms": round(self.random.uniform(1, 300), 1),
                }
            )
        return rows


INVESTIGATION_COLUMNS = [
    "id", "public_id", "question", "asked_by_id", "asked_by_name", "channel", "thread_ts", "origin",
    "source_kind", "source_namespace", "source_name", "source_display", "target_kind", "target_namespace",
    "target_name", "target_display", "namespaces", "status", "verdict_code", "node", "hop", "summary",
    "remediation", "started_at", "finished_at", "duration_ms", "owner",
]  # fmt: skip
STEP_COLUMNS = ["id", "investigation_id", "position", "name", "status", "summary", "evidence", "node", "duration_ms"]


def _batches(
    generator: Generator, rows: int, steps: int, batch: int
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    for start in range(1, rows + 1, batch):
        investigations, step_rows = [], []
        for pk in range(start, min(start + batch, rows + 1)):
            investigations.append(generator.investigation(pk))
            step_rows.extend(generator.steps(pk, (pk - 1) * steps + 1, steps))
        yield investigations, step_rows


def load_sqlite(engine: Engine, generator: Generator, rows: int, steps: int) -> None:
    """Steps first with foreign keys off, then investigations: each FTS row is built once, by trigger."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("BEGIN")
        for investigations, step_rows in _batches(generator, rows, steps, 5000):
            for row in investigations:
                for key in ("started_at", "finished_at"):
                    row[key] = row[key].astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
            cursor.executemany(
                f"INSERT INTO steps ({', '.join(STEP_COLUMNS)}) VALUES ({', '.join('?' * len(STEP_COLUMNS))})",
                [tuple(row[c] for c in STEP_COLUMNS) for row in step_rows],
            )
            cursor.executemany(
                f"INSERT INTO investigations ({', '.join(INVESTIGATION_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(INVESTIGATION_COLUMNS))})",
                [tuple(row[c] for c in INVESTIGATION_COLUMNS) for row in investigations],
            )
        cursor.execute("COMMIT")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("ANALYZE")
    finally:
        raw.close()


def load_postgres(engine: Engine, generator: Generator, rows: int, steps: int) -> None:
    """COPY both tables with triggers off (replica role), then build the search index in one statement."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET session_replication_role = replica")
        for investigations, step_rows in _batches(generator, rows, steps, 20000):
            with cursor.copy(f"COPY investigations ({', '.join(INVESTIGATION_COLUMNS)}) FROM STDIN") as copy:
                for row in investigations:
                    copy.write_row([row[c] for c in INVESTIGATION_COLUMNS])
            with cursor.copy(f"COPY steps ({', '.join(STEP_COLUMNS)}) FROM STDIN") as copy:
                for row in step_rows:
                    copy.write_row([row[c] for c in STEP_COLUMNS])
        cursor.execute("SET session_replication_role = DEFAULT")
        _phase("postgresql: generated and copied rows")
        for table in ("investigations", "steps"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
    finally:
        raw.close()
    with session_factory(engine).begin() as session:
        session.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        session.execute(text("DROP INDEX ix_investigation_search_document"))
        rebuild_search_index(session)
        _phase("postgresql: built search documents")
        session.execute(text("CREATE INDEX ix_investigation_search_document ON investigation_search USING gin (document)"))
    _phase("postgresql: built the GIN index")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    _phase("postgresql: vacuum analyze")


_PHASE_STARTED = [time.perf_counter()]


def _phase(what: str) -> None:
    now = time.perf_counter()
    print(f"  {what}: {now - _PHASE_STARTED[0]:.1f} s", file=sys.stderr, flush=True)
    _PHASE_STARTED[0] = now


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _time(run: Callable[[], int], repeat: int) -> tuple[list[float], float]:
    run()  # warm the cache and the plan once
    samples, hits = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        hits += run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, hits / repeat


def _like_newest(session: Session, word: str) -> int:
    """The reference: what finding a word in evidence costs without the full-text index."""
    rows = session.execute(
        text(
            "SELECT i.public_id FROM investigations AS i WHERE EXISTS (SELECT 1 FROM steps AS s "
            "WHERE s.investigation_id = i.id AND CAST(s.evidence AS TEXT) LIKE :pattern) "
            "ORDER BY i.started_at DESC LIMIT 20"
        ),
        {"pattern": f"%{word}%"},
    ).all()
    return len(rows)


Search = Callable[..., list[Any]]
"""`search_investigations`, or the same function from another revision (``--compare-ref``)."""


def query_shapes(seed: int) -> dict[str, Callable[[random.Random], tuple[str, SearchFilters]]]:
    """Each shape as a function drawing one query (text, filters) from a random source."""
    generator = Generator(seed)  # the loader's seed: the same names, chains and words
    since = NOW - timedelta(days=30)
    chains = _chains(generator)
    return {
        "name (text)": lambda r: (r.choice(generator.workloads)[1], SearchFilters()),
        "name (filter)": lambda r: ("", SearchFilters(name=r.choice(generator.workloads)[1])),
        "verdict (filter)": lambda r: ("", SearchFilters(verdict_code=r.choice(generator.verdicts))),
        "free text (evidence word)": lambda r: (r.choice(FREE_TEXT_WORDS), SearchFilters()),
        "free text (2 words)": lambda r: (f"{r.choice(FREE_TEXT_WORDS)} {r.choice(WORKLOAD_STEMS)}", SearchFilters()),
        "text + namespace + 30d": lambda r: (
            r.choice(FREE_TEXT_WORDS),
            SearchFilters(namespace=r.choice(NAMESPACES), since=since),
        ),
        "text + verdict + node": lambda r: (
            r.choice(WORKLOAD_STEMS),
            SearchFilters(verdict_code=r.choice(generator.verdicts), node=r.choice(NODES)),
        ),
        "free text (rare: one KUBE-SVC chain)": lambda r: (r.choice(chains), SearchFilters()),
    }


def _chains(generator: Generator) -> list[str]:
    return sorted(
        {word for _, summary, evidence in generator.evidence_pool for word in evidence.split('"') if word.startswith("KUBE-SVC-")}
    )


def time_searches(
    engine: Engine, backend: str, rows: int, repeat: int, seed: int, compare: Search | None = None
) -> tuple[list[Timing], list[Timing]]:
    """p50/p99 of each query shape, plus the LIKE-scan reference for free text.

    With `compare` (the search of another revision), each query is also run through it, the two
    alternating on the same words in the same session, so machine load weighs on both alike; its
    timings come second.
    """
    chooser = random.Random(seed + 1)
    sessions = session_factory(engine)
    timings: list[Timing] = []
    compared: list[Timing] = []
    for shape, draw in query_shapes(seed).items():
        searches: list[Search] = [search_investigations] if compare is None else [search_investigations, compare]
        samples: list[list[float]] = [[] for _ in searches]
        hits = [0 for _ in searches]
        with sessions() as session:
            for search in searches:  # warm the cache and the plan once
                search(session, *draw(chooser))
            for turn in range(repeat):
                query_text, filters = draw(chooser)
                order = list(range(len(searches)))
                if turn % 2:
                    order.reverse()
                for index in order:
                    started = time.perf_counter()
                    hits[index] += len(searches[index](session, query_text, filters))
                    samples[index].append((time.perf_counter() - started) * 1000)
        for index, out in enumerate((timings, compared)[: len(searches)]):
            out.append(
                Timing(
                    backend,
                    rows,
                    shape,
                    _percentile(samples[index], 0.5),
                    _percentile(samples[index], 0.99),
                    hits[index] / repeat,
                )
            )
    chains = _chains(Generator(seed))
    references: dict[str, Callable[[Session], int]] = {
        "reference: LIKE newest 20 (evidence word)": lambda s: _like_newest(s, chooser.choice(FREE_TEXT_WORDS)),
        "reference: LIKE newest 20 (one chain)": lambda s: _like_newest(s, chooser.choice(chains)),
    }
    for shape, query in references.items():
        with sessions() as session:
            reference_samples, mean_hits = _time(lambda q=query, s=session: q(s), min(repeat, REFERENCE_REPEAT))  # type: ignore[misc]
        timings.append(
            Timing(backend, rows, shape, _percentile(reference_samples, 0.5), _percentile(reference_samples, 0.99), mean_hits)
        )
    return timings, compared


def search_at_revision(ref: str) -> Search:
    """`search_investigations` as ``bot/history/search.py`` has it at git revision `ref` (e.g. ``main``).

    Loaded as a module of its own beside today's; it must work on today's schema (the migrations
    since `ref` only add to the search index).
    """
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{ref}:bot/history/search.py"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"search_at_{re.sub(r'[^A-Za-z0-9]', '_', ref)}")
    sys.modules[module.__name__] = module  # dataclasses look their module up by name
    exec(compile(source, f"{ref}:bot/history/search.py", "exec"), module.__dict__)  # our own file, at another commit
    search: Search = module.search_investigations
    return search


def time_recording(engine: Engine, backend: str, rows: int, repeat: int, steps: int) -> Timing:
    """Cost of recording one investigation as the bot does: start, each step committed, finish."""
    sessions = session_factory(engine)
    step = StepResult(
        "route", StepStatus.FAIL, "no route to 10.244.7.0/24",
        (Evidence("route-lookup", "no route to 10.244.7.0/24 via flannel.1", "node-7", {"errno": "ENETUNREACH"}),),
        12.0, "node-7",
    )  # fmt: skip
    verdict = Verdict(VerdictCode.NODE_ROUTE_MISSING, "node-7 has no route to 10.244.7.0/24", "node-7", Hop.SOURCE_NODE)

    def record() -> int:
        with sessions.begin() as session:
            inv = service.start_investigation(
                session, question="why can't web reach api in shop?", asked_by=service.Person("U0001", "ana"),
                origin=Origin.SLACK, owner="bench:2",
                source=service.WorkloadRef("deployment", "shop", "web", "deployment shop/web"),
                target=service.WorkloadRef("service", "shop", "api", "service shop/api:8080"),
                channel="C0INCIDENT", thread_ts="1.0",
            )  # fmt: skip
        for order in range(1, steps + 1):
            with sessions.begin() as session:
                service.record_step(session, inv, step, order)
        with sessions.begin() as session:
            service.finish_investigation(session, inv, verdict, (), 100.0)
        return 1

    samples, _ = _time(record, repeat)
    return Timing(backend, rows, f"{RECORD_SHAPE} ({steps} steps, {steps + 2} commits)",
                  _percentile(samples, 0.5), _percentile(samples, 0.99), 1.0)  # fmt: skip


@contextmanager
def postgres_database(server_url: str, keep: str | None = None) -> Iterator[str]:
    """A throwaway database on the server, dropped at the end; or the database named `keep`, kept.

    A kept database is created when it does not exist yet and left on the server afterwards, so a
    million rows are loaded once and reused by the next runs (`run_backend` loads only an empty one).
    """
    name = keep or f"kubereach_bench_{uuid.uuid4().hex[:8]}"
    if not BENCH_DATABASE.fullmatch(name):
        raise SystemExit(f"--pg-keep {name!r}: use letters, digits and underscores, starting with kubereach_bench_")
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first()
            if exists is None:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            if keep is None:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def drop_kept_database(server_url: str, name: str) -> None:
    """Drop a database kept by ``--pg-keep`` (``--pg-drop NAME``)."""
    if not BENCH_DATABASE.fullmatch(name):
        raise SystemExit(f"--pg-drop {name!r}: only databases named kubereach_bench_… are dropped")
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def run_backend(backend: str, url: str, rows: int, args: argparse.Namespace) -> tuple[list[Timing], list[Timing]]:
    """Migrate (a kept database too), load unless already loaded, and time one backend (and `--compare-ref`)."""
    engine = create_history_engine(url)
    try:
        started = time.perf_counter()
        upgrade(engine)
        present = _investigation_count(engine)
        if 0 < present < rows or present > rows + 1000:
            # Each run records a few investigations of its own: a kept database grows by those only.
            raise SystemExit(f"{backend}: the kept database holds {present} investigations, not {rows}; drop it first")
        if present:
            print(f"{backend}: reusing {present} investigations (migrated in {time.perf_counter() - started:.1f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
        else:
            started = time.perf_counter()
            _PHASE_STARTED[0] = started
            loader = load_sqlite if backend == "sqlite" else load_postgres
            loader(engine, Generator(args.seed), rows, args.steps)
            print(f"{backend}: loaded {rows} investigations x {args.steps} steps in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        compare = search_at_revision(args.compare_ref) if args.compare_ref else None
        # As `kubereach serve` does once started: the loader's and the imports' objects leave the
        # collector's walks, so a full collection does not land inside a timed search (bot.heap).
        settle_heap()
        timings, compared = time_searches(engine, backend, rows, args.queries, args.seed, compare)
        timings.append(time_recording(engine, backend, rows, args.record_repeat, args.steps))
        return timings, compared
    finally:
        engine.dispose()


def _investigation_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM investigations")).scalar_one())


def main() -> None:
    """Parse flags, run each backend, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite-rows", type=int, default=100_000, help="investigations on SQLite (0 skips)")
    parser.add_argument("--pg-rows", type=int, default=1_000_000, help="investigations on PostgreSQL (0 skips)")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="server to create the throwaway benchmark database on")  # fmt: skip
    parser.add_argument("--steps", type=int, default=4, help="steps per investigation")
    parser.add_argument("--queries", type=int, default=100, help="timed queries per shape")
    parser.add_argument("--record-repeat", type=int, default=50, help="timed investigations recorded")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object, last")
    parser.add_argument("--sqlite-keep", metavar="PATH", help="use this SQLite file, loading it only when empty; kept")
    parser.add_argument(
        "--pg-keep", metavar="NAME", help="use this database (kubereach_bench_…), loading it only when empty; kept"
    )
    parser.add_argument("--compare-ref", metavar="REF", help="also time the search of git revision REF, interleaved")
    parser.add_argument("--pg-drop", metavar="NAME", help="drop a database kept by --pg-keep, and do nothing else")
    args = parser.parse_args()
    if args.pg_drop:
        drop_kept_database(args.pg_url, args.pg_drop)
        return

    timings: list[Timing] = []
    compared: list[Timing] = []
    runs = []
    if args.sqlite_rows > 0 and args.sqlite_keep:
        runs.append(run_backend("sqlite", f"sqlite:///{Path(args.sqlite_keep).resolve()}", args.sqlite_rows, args))
    elif args.sqlite_rows > 0:
        with tempfile.TemporaryDirectory(prefix="kubereach-bench-") as directory:
            runs.append(run_backend("sqlite", f"sqlite:///{directory}/history.db", args.sqlite_rows, args))
    if args.pg_rows > 0:
        with postgres_database(args.pg_url, args.pg_keep) as url:
            runs.append(run_backend("postgresql", url, args.pg_rows, args))
    for backend_timings, backend_compared in runs:
        timings += backend_timings
        compared += backend_compared

    print(f"load average {' '.join(f'{value:.1f}' for value in os.getloadavg())}", file=sys.stderr, flush=True)
    _print_table(timings)
    if compared:
        print(f"\nthe same queries, interleaved, through search_investigations at {args.compare_ref}:")
        _print_table(compared)
    if args.json:
        result = figures(timings)
        if compared:
            result["compare"] = {"ref": args.compare_ref, **figures(compared)}
        print(json.dumps(result))


def _print_table(timings: list[Timing]) -> None:
    print(f"{'backend':<11} {'rows':>9}  {'shape':<48} {'p50 ms':>9} {'p99 ms':>9} {'hits':>6}")
    for timing in timings:
        print(
            f"{timing.backend:<11} {timing.rows:>9}  {timing.shape:<48} "
            f"{timing.p50_ms:>9.2f} {timing.p99_ms:>9.2f} {timing.mean_hits:>6.1f}"
        )


def figures(timings: list[Timing]) -> dict[str, dict[str, Any]]:
    """``{backend: {shape: {p50_ms, p99_ms}}, "record_ms": {backend: {p50_ms, p99_ms}}}``."""
    result: dict[str, dict[str, Any]] = {"postgresql": {}, "sqlite": {}, "record_ms": {}}
    for timing in timings:
        figure = {"p50_ms": round(timing.p50_ms, 3), "p99_ms": round(timing.p99_ms, 3)}
        if timing.shape.startswith(RECORD_SHAPE):
            result["record_ms"][timing.backend] = figure
        else:
            result[timing.backend][timing.shape] = figure
    return result


if __name__ == "__main__":
    main()

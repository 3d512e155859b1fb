"""The investigation history as SQLAlchemy 2.0 typed models (SQLite and PostgreSQL).

Timestamps are timezone-aware UTC on both databases; JSON columns are JSONB on PostgreSQL and JSON
text on SQLite; enums are stored as their string values without database enum types, so adding a
verdict code never needs a migration. The full-text index is not modelled here: the first migration
creates it by hand (an FTS5 table on SQLite, a tsvector table on PostgreSQL, see `search.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bot.history.enums import (
    AuditAction,
    DigestCadence,
    DigestRunStatus,
    InvestigationStatus,
    Origin,
)
from bot.playbook.models import Hop, StepStatus, VerdictCode

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite keeps naive text, so we add the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no timezone; history stores UTC instants only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
"""JSON on SQLite, JSONB on PostgreSQL (indexable, and what the search trigger reads)."""

# SQLite only aliases rowid for INTEGER PRIMARY KEY, so big integers become plain INTEGER there.
RowId = BigInteger().with_variant(Integer(), "sqlite")


def _enum_values(enum_type: type[StrEnum]) -> list[str]:
    return [member.value for member in enum_type]


def _stored_enum(enum_type: type[StrEnum], length: int) -> Enum:
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=_enum_values,
        validate_strings=True,
    )


pk = Annotated[int, mapped_column(RowId, primary_key=True, autoincrement=True)]
utc_time = Annotated[datetime, mapped_column(UTCDateTime())]
json_list = Annotated[list[str], mapped_column(JSONDocument)]
json_records = Annotated[list[dict[str, Any]], mapped_column(JSONDocument)]
json_object = Annotated[dict[str, Any], mapped_column(JSONDocument)]
short_text = Annotated[str, mapped_column(String(255))]
slack_id = Annotated[str, mapped_column(String(64))]
verdict_code = Annotated[VerdictCode, mapped_column(_stored_enum(VerdictCode, 40))]
hop = Annotated[Hop, mapped_column(_stored_enum(Hop, 32))]


class Base(DeclarativeBase):
    """Declarative base of every history table, with stable constraint names for Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Investigation(Base):
    """One question and everything the bot found while answering it."""

    __tablename__ = "investigations"

    id: Mapped[pk]
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    question: Mapped[str] = mapped_column(Text)
    asked_by_id: Mapped[slack_id]
    asked_by_name: Mapped[short_text]
    channel: Mapped[slack_id | None]
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[Origin] = mapped_column(_stored_enum(Origin, 16))
    cluster: Mapped[short_text | None]

    source_kind: Mapped[str | None] = mapped_column(String(64))
    source_namespace: Mapped[short_text | None]
    source_name: Mapped[short_text | None]
    source_display: Mapped[short_text | None]
    target_kind: Mapped[str | None] = mapped_column(String(64))
    target_namespace: Mapped[short_text | None]
    target_name: Mapped[short_text | None]
    target_display: Mapped[short_text | None]
    namespaces: Mapped[json_list]

    status: Mapped[InvestigationStatus] = mapped_column(_stored_enum(InvestigationStatus, 16))
    verdict_code: Mapped[verdict_code | None]
    node: Mapped[short_text | None]
    hop: Mapped[hop | None]
    summary: Mapped[str | None] = mapped_column(Text)
    remediation: Mapped[json_list]
    error: Mapped[str | None] = mapped_column(Text)

    started_at: Mapped[utc_time]
    finished_at: Mapped[utc_time | None]
    duration_ms: Mapped[float | None] = mapped_column(Float)
    owner: Mapped[str] = mapped_column(String(255))

    steps: Mapped[list[Step]] = relationship(
        back_populates="investigation", order_by="Step.position", cascade="all, delete-orphan"
    )
    findings: Mapped[list[FindingRecord]] = relationship(
        back_populates="investigation", order_by="FindingRecord.id", cascade="all, delete-orphan"
    )
    resolutions: Mapped[list[Resolution]] = relationship(
        back_populates="investigation", order_by="Resolution.resolved_at", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index(None, "started_at"),
        Index(None, "verdict_code", "started_at"),
        Index(None, "source_name", "started_at"),
        Index(None, "target_name", "started_at"),
        Index(None, "node", "verdict_code", "id"),
        Index(None, "channel", "thread_ts"),
        Index(None, "status", "owner"),
    )


class Step(Base):
    """One playbook step of an investigation, in order, with its evidence."""

    __tablename__ = "steps"

    id: Mapped[pk]
    investigation_id: Mapped[int] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[short_text]
    status: Mapped[StepStatus] = mapped_column(_stored_enum(StepStatus, 16))
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[json_records]
    node: Mapped[short_text | None]
    duration_ms: Mapped[float] = mapped_column(Float)

    investigation: Mapped[Investigation] = relationship(back_populates="steps")

    __table_args__ = (UniqueConstraint("investigation_id", "position"),)


class FindingRecord(Base):
    """A problem seen on the way that is not the verdict."""

    __tablename__ = "findings"

    id: Mapped[pk]
    investigation_id: Mapped[int] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"), index=True)
    code: Mapped[verdict_code]
    node: Mapped[short_text | None]
    hop: Mapped[hop | None]
    summary: Mapped[str] = mapped_column(Text)

    investigation: Mapped[Investigation] = relationship(back_populates="findings")


class Resolution(Base):
    """Someone saying what fixed it (or that it is fixed)."""

    __tablename__ = "resolutions"

    id: Mapped[pk]
    investigation_id: Mapped[int] = mapped_column(ForeignKey("investigations.id", ondelete="CASCADE"), index=True)
    resolved_by_id: Mapped[slack_id]
    resolved_by_name: Mapped[short_text]
    resolved_at: Mapped[utc_time]
    note: Mapped[str] = mapped_column(Text)

    investigation: Mapped[Investigation] = relationship(back_populates="resolutions")


class DigestSubscription(Base):
    """A channel's standing order for a health digest at a local time of day."""

    __tablename__ = "digest_subscriptions"

    id: Mapped[pk]
    channel: Mapped[slack_id] = mapped_column(index=True)
    cadence: Mapped[DigestCadence] = mapped_column(_stored_enum(DigestCadence, 16))
    time_of_day: Mapped[str] = mapped_column(String(5))
    """Local wall-clock time, ``HH:MM``."""
    timezone: Mapped[str] = mapped_column(String(64))
    """IANA zone name, e.g. ``Europe/Lisbon``."""
    weekday: Mapped[int | None] = mapped_column(Integer)
    """0 = Monday … 6 = Sunday, for weekly digests."""
    namespaces: Mapped[json_list]
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_by_id: Mapped[slack_id]
    created_by_name: Mapped[short_text]
    created_at: Mapped[utc_time]

    runs: Mapped[list[DigestRun]] = relationship(back_populates="subscription", cascade="all, delete-orphan")


class DigestRun(Base):
    """One slot of a subscription: claimed once (unique per subscription and slot), then posted."""

    __tablename__ = "digest_runs"

    id: Mapped[pk]
    subscription_id: Mapped[int] = mapped_column(ForeignKey("digest_subscriptions.id", ondelete="CASCADE"))
    slot_at: Mapped[utc_time]
    started_at: Mapped[utc_time]
    finished_at: Mapped[utc_time | None]
    status: Mapped[DigestRunStatus] = mapped_column(_stored_enum(DigestRunStatus, 16))
    content: Mapped[json_object | None]
    owner: Mapped[str] = mapped_column(String(255))

    subscription: Mapped[DigestSubscription] = relationship(back_populates="runs")

    __table_args__ = (UniqueConstraint("subscription_id", "slot_at"),)


class AuditEntry(Base):
    """One request to the bot, allowed or denied, and why."""

    __tablename__ = "audit_log"

    id: Mapped[pk]
    at: Mapped[utc_time] = mapped_column(index=True)
    user_id: Mapped[slack_id]
    user_name: Mapped[short_text]
    channel: Mapped[slack_id | None]
    text: Mapped[str] = mapped_column(Text)
    action: Mapped[AuditAction] = mapped_column(_stored_enum(AuditAction, 16))
    allowed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    investigation_id: Mapped[str | None] = mapped_column(String(40))


class SlackSeenRequest(Base):
    """A Slack delivery already taken (its event id, trigger id or signature), shared by restarts and replicas."""

    __tablename__ = "slack_seen_requests"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[utc_time] = mapped_column(index=True)

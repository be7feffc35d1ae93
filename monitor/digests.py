"""Digests on a schedule and on demand: the I/O around :mod:`monitor.digest`.

:func:`render_digest` reads the store once and builds a digest as of ``now`` (the entry point
for anything that shows one: the CLI, a chat bot's ``/digest``). :func:`queue_due` is the
daemon's job: each digest whose time has come today (in its time zone) is queued for its
sinks with the id of its name and day, so a restart, a catch-up at start and another replica
queue it once; a day that has passed is not sent late. :func:`queue_now` queues one by hand,
with an id of its own.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog

from monitor import digest_render
from monitor.config import Config, DigestConfig
from monitor.digest import Digest, build
from monitor.digest_schedule import digest_id, due_today, manual_id, previous_occurrence
from monitor.errors import ConfigError
from monitor.schedule import MARKETS, trading_holidays
from monitor.store import Store

log = structlog.get_logger("monitor.digests")


def holidays(config: Config) -> Container[date]:
    """The exchange calendar of ``market_days`` (``[schedule] market_hours``' market, or
    us-equities, with ``[schedule] holidays``); empty when no digest asks for it."""
    if not any(d.market_days for d in config.digests):
        return frozenset()
    market = MARKETS[config.schedule.market_hours or "us-equities"]
    return trading_holidays(market, config.schedule.holidays)


def find(config: Config, name: str) -> DigestConfig:
    """The digest named ``name``; ``ConfigError`` lists the names there are."""
    found = config.digest(name)
    if found is None:
        names = ", ".join(d.name for d in config.digests) or "none are configured"
        raise ConfigError(f"no digest named '{name}' in [[digests]] ({names})")
    return found


async def render_digest(
    store: Store,
    config: Config,
    name: str,
    now: datetime,
    *,
    ident: str | None = None,
    calendar: Container[date] | None = None,
) -> Digest:
    """The digest ``name`` as of ``now``, from the stored snapshots and history (no API call).

    ``ident`` is its notification id (a fresh one when not given)."""
    digest = find(config, name)
    timezone = config.digest_timezone(digest)
    zone = ZoneInfo(timezone)
    days = holidays(config) if calendar is None else calendar
    since = previous_occurrence(digest, now, zone, days)
    data = await store.digest_data(
        since=since.timestamp() if since is not None else None, until=now.timestamp()
    )
    return build(
        digest,
        data,
        ident=ident or manual_id(),
        timezone=timezone,
        since=since,
        until=now,
        day=now.astimezone(zone).date(),
        events=frozenset(r.name for r in config.rules if r.kind == "event"),
    )


async def enqueue(
    store: Store,
    digest: Digest,
    sinks: tuple[str, ...],
    now: datetime,
    *,
    announce: bool = False,
) -> None:
    await store.queue_digest(
        digest.payload(),
        sinks,
        summary=digest_render.summary(digest),
        now=now.timestamp(),
        announce=announce,
    )
    log.info("digest_queued", digest=digest.name, id=digest.id, sinks=list(sinks))


async def queue_now(store: Store, config: Config, name: str, now: datetime) -> Digest:
    """Render the digest now and queue it for its sinks with an id of its own."""
    digest = await render_digest(store, config, name, now)
    await enqueue(store, digest, find(config, name).sinks, now, announce=True)
    return digest


async def queue_due(
    store: Store,
    config: Config,
    now: datetime,
    *,
    done: set[tuple[str, date, str]],
    calendar: Container[date] | None = None,
) -> list[str]:
    """Queue every digest due today and not queued yet; ``done`` remembers the (name, day,
    sink) already handled by this process (a sink added by a reload is not, so it gets the
    day's digest too). Returns the names queued."""
    days = holidays(config) if calendar is None else calendar
    queued = []
    for digest in config.digests:
        zone = ZoneInfo(config.digest_timezone(digest))
        moment = due_today(digest, now, zone, days)
        if moment is None:
            continue
        day = moment.date()
        if all((digest.name, day, sink) in done for sink in digest.sinks):
            continue
        ident = digest_id(digest.name, day)
        already = await store.digest_queued(ident)
        missing = tuple(s for s in digest.sinks if s not in already)
        if missing:
            rendered = await render_digest(
                store, config, digest.name, now, ident=ident, calendar=days
            )
            await enqueue(store, rendered, missing, now)
            queued.append(digest.name)
        done.update((digest.name, day, sink) for sink in digest.sinks)
    return queued

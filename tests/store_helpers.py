"""Writing a poll in store tests by keyword, as the pipeline's step would describe it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from monitor.cycle import Delivery, HistoryPoint, PollRecord, PollWrite
from monitor.models import Account, ActiveAlert, Notification
from monitor.rules import AlertKey, SourceHealth
from monitor.store import Store


async def commit_poll(
    store: Store,
    source: str,
    *,
    poll: PollRecord,
    health: SourceHealth,
    upserts: Sequence[Account] = (),
    deletes: Iterable[str] = (),
    active: Mapping[AlertKey, ActiveAlert] | None = None,
    outbox: Sequence[tuple[Notification, Sequence[str]]] = (),
    active_before: Mapping[AlertKey, ActiveAlert] | None = None,
    history: Sequence[HistoryPoint] = (),
    history_deletes: Sequence[HistoryPoint] = (),
    held: Sequence[tuple[Notification, Sequence[str], str]] = (),
) -> None:
    """``store.commit`` of a :class:`PollWrite` made of these parts."""
    deliveries = [Delivery(n, tuple(sinks)) for n, sinks in outbox]
    deliveries += [Delivery(n, tuple(sinks), mute) for n, sinks, mute in held]
    await store.commit(
        PollWrite(
            source,
            poll,
            health,
            upserts=tuple(upserts),
            deletes=tuple(deletes),
            active=active,
            active_before=active_before,
            history=tuple(history),
            history_deletes=tuple(history_deletes),
            deliveries=tuple(deliveries),
        )
    )

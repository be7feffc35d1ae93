"""What a poll needs, opened together and closed in reverse: the HTTP session, the store, the
sinks, the delivery workers and one pipeline per source (:func:`open_runtime`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from monitor.auth import OAuthTokens, StaticToken
from monitor.config import Config, SecretRef, SourceSpec, check_secret, resolve_secret
from monitor.control import ControlBook
from monitor.delivery import Delivery, concurrency, group_windows, idle_recheck
from monitor.errors import ConfigError
from monitor.metrics import Metrics
from monitor.pipeline import SourcePipeline
from monitor.sinks.base import Sink
from monitor.sinks.registry import build_sinks
from monitor.source import BalancesSource
from monitor.store import Store, open_store


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    config: Config
    store: Store
    session: aiohttp.ClientSession
    sinks: dict[str, Sink]
    delivery: Delivery
    pipelines: dict[str, SourcePipeline]
    #: The silences and acknowledgements in force (read from the store, kept up to date).
    control: ControlBook = field(default_factory=ControlBook)

    @property
    def pipeline(self) -> SourcePipeline:
        """The first source's pipeline (the only one with a plain ``[api]`` config)."""
        return next(iter(self.pipelines.values()))


def require_secrets(refs: Iterable[SecretRef]) -> None:
    """Check that every secret ``refs`` name can be read; one ConfigError listing each that
    cannot (as ``check-config`` notes them), so a start needs one round trip, not one per key."""
    problems = [note for ref in refs if (note := check_secret(ref)) is not None]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} secrets cannot be read", problems)


def token_provider(spec: SourceSpec, session: aiohttp.ClientSession) -> StaticToken | OAuthTokens:
    """The source's token: static, or OAuth2 (its four secrets resolved now, to fail early)."""
    oauth = spec.config.oauth
    if oauth is None:
        ref = spec.config.token_ref_at(spec.key)
        if ref is None:  # pragma: no cover - the config guarantees a token without oauth
            raise ConfigError(f"{spec.key}: no token")
        return StaticToken(resolve_secret(ref))
    refs = oauth.refs(f"{spec.key}.oauth")
    for ref in refs.values():
        resolve_secret(ref)
    return OAuthTokens(oauth, refs, session, source=spec.name, clock=utcnow)


def make_pipeline(
    spec: SourceSpec,
    config: Config,
    *,
    session: aiohttp.ClientSession,
    store: Store,
    delivery: Delivery,
    tokens: StaticToken | OAuthTokens,
    control: ControlBook | None = None,
) -> SourcePipeline:
    return SourcePipeline(
        source=spec.name,
        config=config,
        rules=config.rules_for(spec.name),
        fetcher=BalancesSource(spec.name, spec.config, session, tokens),
        store=store,
        on_queued=delivery.wake,
        clock=utcnow,
        down_after=spec.config.down_after,
        control=control.get if control is not None else None,
    )


@contextlib.asynccontextmanager
async def open_runtime(config: Config, metrics: Metrics | None = None) -> AsyncIterator[Runtime]:
    """Open everything a poll needs; close it all in reverse order, whatever happens.

    Every secret is checked first, all at once, before anything is opened; the store's lock
    (:class:`~monitor.errors.StateLockedError`) then keeps a second process off the database.
    """
    require_secrets(config.secret_refs())
    async with AsyncExitStack() as stack:
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        specs = config.all_sources()
        tokens = {s.name: token_provider(s, session) for s in specs}  # ConfigError early
        store = await open_store(config.state)
        stack.push_async_callback(store.close)
        sinks = build_sinks(config.sinks, session)
        delivery = Delivery(
            store,
            sinks,
            config.delivery,
            on_result=metrics.notification if metrics is not None else None,
            windows=group_windows(config),
            idle_recheck=idle_recheck(config),
            retry_at_start=not config.state.postgres,
            concurrency=concurrency(config),
        )
        control = ControlBook()
        await control.refresh(store, utcnow())
        pipelines = {
            s.name: make_pipeline(
                s,
                config,
                session=session,
                store=store,
                delivery=delivery,
                tokens=tokens[s.name],
                control=control,
            )
            for s in specs
        }
        runtime = Runtime(config, store, session, sinks, delivery, pipelines, control)
        stack.push_async_callback(_close_sinks, runtime)  # those in force at exit (reloads)
        for pipeline in pipelines.values():
            await pipeline.load()
        yield runtime


async def _close_sinks(runtime: Runtime) -> None:
    for sink in runtime.sinks.values():
        await sink.aclose()

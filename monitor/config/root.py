"""The whole file: every section, and the checks that span sections (names that refer to others).

Nothing else builds a :class:`Config` than :func:`monitor.config.load_config` (or, in tests,
:func:`monitor.config.config_from_dict`), which also resolves relative paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import Field, model_validator

from monitor.config.digests import DigestConfig
from monitor.config.mutes import MuteConfig
from monitor.config.rules import SOURCE_DOWN_RULE, RuleConfig
from monitor.config.schedule import ScheduleConfig, describe_schedule
from monitor.config.secrets import SecretRef, check_secret
from monitor.config.service import (
    DeliveryConfig,
    HeartbeatConfig,
    HistoryConfig,
    HttpConfig,
    LogConfig,
    StateConfig,
)
from monitor.config.sinks import SinkConfig, TelegramSinkConfig
from monitor.config.sources import ApiConfig, SourceBase, SourceConfig
from monitor.config.types import FrozenModel, KeyProblemsError, item_key, public_url
from monitor.models import DEFAULT_SOURCE, Severity


class Config(FrozenModel):
    """The whole configuration file. Built only by :func:`load_config` (or from a dict in tests).

    A plain model: the TOML file is its only source. An environment variable never changes a key
    behind the operator's back (secrets name their own variables with ``*_env``).
    """

    api: ApiConfig | None = None
    sources: tuple[SourceConfig, ...] = ()
    schedule: ScheduleConfig = ScheduleConfig()
    state: StateConfig = StateConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    history: HistoryConfig = HistoryConfig()
    heartbeat: HeartbeatConfig | None = None
    sinks: tuple[SinkConfig, ...] = Field(min_length=1)
    rules: tuple[RuleConfig, ...] = ()
    mute: tuple[MuteConfig, ...] = ()
    digests: tuple[DigestConfig, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[tuple[str, str]] = []
        if self.api is None and not self.sources:
            problems.append(("api", "give [api] or at least one [[sources]]"))
        problems += _duplicates("sources", [s.name for s in self.sources], "source")
        for i, source in enumerate(self.sources):
            key = item_key("sources", i, source.name)
            if self.api is not None and source.name == DEFAULT_SOURCE:
                problems.append((f"{key}.name", f"'{DEFAULT_SOURCE}' is the name of [api]"))
            if source.interval is not None and self.schedule.cron is not None:
                problems.append((f"{key}.interval", "not used with [schedule] cron"))
        source_names = {s.name for s in self.all_sources()}
        problems += _duplicates("sinks", [s.name for s in self.sinks], "sink")
        problems += _duplicates("rules", [r.name for r in self.rules], "rule")
        problems += _shared_bots(self.sinks)
        sink_names = {s.name for s in self.sinks}
        for i, rule in enumerate(self.rules):
            key = item_key("rules", i, rule.name)
            if rule.name == SOURCE_DOWN_RULE:
                problems.append((f"{key}.name", f"'{SOURCE_DOWN_RULE}' is the built-in rule"))
            for name in rule.sinks or ():
                if name not in sink_names:
                    problems.append((f"{key}.sinks", f"unknown sink '{name}'"))
            for n, escalation in enumerate(getattr(rule, "escalate", ())):
                for name in escalation.sinks:
                    if name not in sink_names:
                        problems.append((f"{key}.escalate[{n}].sinks", f"unknown sink '{name}'"))
            for name in rule.sources or ():
                if name not in source_names:
                    problems.append((f"{key}.sources", f"unknown source '{name}'"))
        problems += _duplicates("mute", [m.name for m in self.mute], "mute")
        rule_names = {r.name for r in self.rules} | {SOURCE_DOWN_RULE}
        for i, mute in enumerate(self.mute):
            for name in mute.rules or ():
                if name not in rule_names:
                    problems.append(
                        (f"{item_key('mute', i, mute.name)}.rules", f"unknown rule '{name}'")
                    )
        problems += _digest_problems(self.digests, self.sinks, source_names)
        if problems:
            raise KeyProblemsError(problems, absolute=True)
        return self

    def digest(self, name: str) -> DigestConfig | None:
        return next((d for d in self.digests if d.name == name), None)

    def digest_timezone(self, digest: DigestConfig) -> str:
        """The digest's time zone: its own, or ``[schedule] timezone``."""
        return digest.timezone or self.schedule.timezone

    def rule(self, name: str) -> RuleConfig | None:
        return next((r for r in self.rules if r.name == name), None)

    def all_sources(self) -> list[SourceSpec]:
        """Every source to poll: ``[api]`` as ``default``, then ``[[sources]]`` in file order."""
        specs = []
        if self.api is not None:
            specs.append(SourceSpec(DEFAULT_SOURCE, self.api, "api", None))
        specs += [
            SourceSpec(s.name, s, item_key("sources", i, s.name), s.interval)
            for i, s in enumerate(self.sources)
        ]
        return specs

    def rules_for(self, source: str) -> tuple[RuleConfig, ...]:
        return tuple(r for r in self.rules if r.applies_to(source))

    def secret_refs(self) -> list[SecretRef]:
        refs = [ref for spec in self.all_sources() for ref in spec.config.secret_refs_at(spec.key)]
        for i, sink in enumerate(self.sinks):
            refs += sink.secret_refs(i)
        if (token := self.http.auth_token_ref()) is not None:
            refs.append(token)
        if self.heartbeat is not None:
            refs.append(self.heartbeat.url_ref())
        if (password := self.state.password_ref()) is not None:
            refs.append(password)
        return refs

    def missing_secrets(self) -> list[str]:
        """A problem line for every secret that cannot be read here (an unset variable, a
        missing file, a URL that is not one), in file order: all of them at once, for
        ``check-config`` to note and for ``run`` and ``once`` to refuse to start with."""
        return [note for ref in self.secret_refs() if (note := check_secret(ref)) is not None]

    def sinks_for(
        self,
        rule: str,
        severity: Severity | None = None,
        *,
        resolved: bool = False,
        definition: RuleConfig | None = None,
    ) -> tuple[str, ...]:
        """The sink names a rule's notifications go to (``source_down``: every sink), less
        those whose ``min_severity`` is above ``severity``, and, for a ``resolved`` one of a
        rule with ``send_resolved = false``, less those that do not track alert state.
        ``definition`` stands in for a rule no longer in the config (a reload removed it)."""
        found = definition if definition is not None else self.rule(rule)
        names = found.sinks if found is not None else None
        quiet = resolved and found is not None and not found.notifies_resolved
        return tuple(
            s.name
            for s in self.sinks
            if (names is None or s.name in names)
            and (severity is None or s.accepts(severity))
            and (not quiet or s.TRACKS_STATE)
        )

    def summary(self) -> str:
        specs = self.all_sources()
        if len(specs) == 1:
            s = specs[0]
            stream = (
                f", streaming from {public_url(s.config.stream_address)}" if s.config.stream else ""
            )
            where = f"source {public_url(s.config.url)} ({s.config.credentials()}{stream})"
        else:
            where = f"{len(specs)} sources ({', '.join(s.name for s in specs)})"
        bots = [s.name for s in self.sinks if isinstance(s, TelegramSinkConfig) and s.commands]
        answers = f" (a Telegram bot answers on {', '.join(bots)})" if bots else ""
        digests = ", ".join(d.name for d in self.digests)
        return (
            f"{where}, {describe_schedule(self.schedule)}, "
            f"{plural(len(self.rules), 'rule')}, {plural(len(self.sinks), 'sink')}{answers}"
            + (f", {plural(len(self.mute), 'mute window')}" if self.mute else "")
            + (f", {plural(len(self.digests), 'digest')} ({digests})" if self.digests else "")
        )


@dataclass(frozen=True)
class SourceSpec:
    """One source to poll, whichever table it came from."""

    name: str
    config: SourceBase
    key: str  # "api" or "sources[2] (fund)": where its keys live, for messages
    interval: timedelta | None  # its own interval, overriding [schedule]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _shared_bots(sinks: Iterable[SinkConfig]) -> list[tuple[str, str]]:
    """Telegram sinks answering commands with the same bot token (as written): Telegram lets
    one consumer read a bot's updates, the others would be refused (409) for ever."""
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for i, sink in enumerate(sinks):
        if not isinstance(sink, TelegramSinkConfig) or not sink.commands:
            continue
        ref = (
            ("value", sink.bot_token.get_secret_value())
            if sink.bot_token is not None
            else ("env", sink.bot_token_env or "")
            if sink.bot_token_env is not None
            else ("file", str(sink.bot_token_file))
        )
        if ref in seen:
            problems.append(
                (
                    f"{item_key('sinks', i, sink.name)}.commands",
                    f"sink '{seen[ref]}' already answers commands with the same bot token (one"
                    " process may read a bot's updates: give each its own bot)",
                )
            )
        seen.setdefault(ref, sink.name)
    return problems


def _digest_problems(
    digests: Iterable[DigestConfig], sinks: Iterable[SinkConfig], source_names: set[str]
) -> list[tuple[str, str]]:
    """Unique names, sinks that exist and can carry a digest, sources that exist."""
    digests = list(digests)
    problems = _duplicates("digests", [d.name for d in digests], "digest")
    types = {s.name: s for s in sinks}
    for i, digest in enumerate(digests):
        key = item_key("digests", i, digest.name)
        for name in digest.sinks:
            sink = types.get(name)
            if sink is None:
                problems.append((f"{key}.sinks", f"unknown sink '{name}'"))
            elif not sink.CARRIES_DIGESTS:
                problems.append(
                    (
                        f"{key}.sinks",
                        f"sink '{name}' ({sink.type}) is an alert API and cannot carry a digest",
                    )
                )
        for name in digest.sources or ():
            if name not in source_names:
                problems.append((f"{key}.sources", f"unknown source '{name}'"))
    return problems


def _duplicates(section: str, names: Iterable[str], what: str) -> list[tuple[str, str]]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(names):
        if name in seen:
            problems.append(
                (f"{item_key(section, i, name)}.name", f"duplicate {what} name '{name}'")
            )
        seen.add(name)
    return problems

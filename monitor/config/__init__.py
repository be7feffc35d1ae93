"""The TOML configuration: pydantic models by section, loading, and messages that name the key.

Every model is frozen and forbids unknown keys, so a typo at any depth is an error. Secrets are
``SecretStr`` and come in three spellings (``token``, ``token_env``, ``token_file``); they are
resolved only when a command needs them (:func:`resolve_secret`), so ``check-config`` works on a
machine that does not hold them. Relative paths are resolved against the config file's folder.

The modules, in the order they import each other:

- ``types``: the frozen model base, durations, names, URLs, numbers
- ``secrets``: a secret's three spellings, :class:`SecretRef`, :func:`resolve_secret`
- ``sources``, ``schedule``, ``service``, ``sinks``, ``rules``, ``mutes``: one per section
- ``root``: :class:`Config`, the whole file, and the checks that span sections
- ``messages``: pydantic's errors as ``key.path: message`` problem lines
- ``load``: :func:`load_config`, :func:`config_from_dict`, relative paths

Everything public is importable from ``monitor.config`` itself.
"""

from monitor.config.digests import DigestConfig
from monitor.config.load import (
    DEFAULT_CONFIG,
    ENV_CONFIG,
    config_from_dict,
    default_config_path,
    load_config,
)
from monitor.config.messages import format_validation_errors
from monitor.config.mutes import WEEKDAYS, MuteConfig, Weekday
from monitor.config.root import Config, SourceSpec
from monitor.config.rules import (
    RESERVED_LABELS,
    RULE_CONFIG_TYPES,
    SOURCE_DOWN_RULE,
    AccountAddedRuleConfig,
    AccountRemovedRuleConfig,
    ChangeRuleConfig,
    DeltaRuleConfig,
    EscalationStep,
    ExpressionRuleConfig,
    NumericField,
    Op,
    RestrictionChangeRuleConfig,
    RuleConfig,
    StaleRuleConfig,
    Template,
    ThresholdRuleConfig,
)
from monitor.config.schedule import MARKET_PRESETS, ScheduleConfig, check_cron, describe_schedule
from monitor.config.secrets import SecretRef, check_secret, resolve_secret
from monitor.config.service import (
    DeliveryConfig,
    HeartbeatConfig,
    HistoryConfig,
    HttpConfig,
    LogConfig,
    StateConfig,
    parse_listen,
)
from monitor.config.sinks import (
    SEVERITY_RANK,
    SINK_CONFIG_TYPES,
    AlertmanagerSinkConfig,
    AppriseSinkConfig,
    DiscordSinkConfig,
    EmailSinkConfig,
    Headers,
    LogSinkConfig,
    MsTeamsSinkConfig,
    PagerDutySinkConfig,
    SinkConfig,
    SlackSinkConfig,
    TelegramSinkConfig,
    WebhookSinkConfig,
)
from monitor.config.sources import OAUTH_SECRETS, ApiConfig, OAuthConfig, SourceBase, SourceConfig
from monitor.config.types import (
    Duration,
    HttpUrlText,
    Name,
    Number,
    WsUrlText,
    format_duration,
    parse_duration,
    public_url,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "MARKET_PRESETS",
    "OAUTH_SECRETS",
    "RESERVED_LABELS",
    "RULE_CONFIG_TYPES",
    "SEVERITY_RANK",
    "SINK_CONFIG_TYPES",
    "SOURCE_DOWN_RULE",
    "WEEKDAYS",
    "AccountAddedRuleConfig",
    "AccountRemovedRuleConfig",
    "AlertmanagerSinkConfig",
    "ApiConfig",
    "AppriseSinkConfig",
    "ChangeRuleConfig",
    "Config",
    "DeliveryConfig",
    "DeltaRuleConfig",
    "DigestConfig",
    "DiscordSinkConfig",
    "Duration",
    "EmailSinkConfig",
    "EscalationStep",
    "ExpressionRuleConfig",
    "Headers",
    "HeartbeatConfig",
    "HistoryConfig",
    "HttpConfig",
    "HttpUrlText",
    "LogConfig",
    "LogSinkConfig",
    "MsTeamsSinkConfig",
    "MuteConfig",
    "Name",
    "Number",
    "NumericField",
    "OAuthConfig",
    "Op",
    "PagerDutySinkConfig",
    "RestrictionChangeRuleConfig",
    "RuleConfig",
    "ScheduleConfig",
    "SecretRef",
    "SinkConfig",
    "SlackSinkConfig",
    "SourceBase",
    "SourceConfig",
    "SourceSpec",
    "StaleRuleConfig",
    "StateConfig",
    "TelegramSinkConfig",
    "Template",
    "ThresholdRuleConfig",
    "WebhookSinkConfig",
    "Weekday",
    "WsUrlText",
    "check_cron",
    "check_secret",
    "config_from_dict",
    "default_config_path",
    "describe_schedule",
    "format_duration",
    "format_validation_errors",
    "load_config",
    "parse_duration",
    "parse_listen",
    "public_url",
    "resolve_secret",
]

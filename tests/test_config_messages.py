"""Tests for monitor.config.messages: a bad config is one 'key.path: message' line per problem,
never quoting a value (it may be a secret)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from config_helpers import (
    BASE_DIR,
    CHANGEABLE,
    DROP,
    DURATION_HELP,
    HOOK_URL,
    NUMERIC,
    OPS,
    SECRETS,
    api,
    change,
    config,
    expression,
    log_sink,
    oauth,
    problems,
    restriction,
    set_key,
    slack,
    source,
    threshold,
    webhook,
)
from pydantic import AfterValidator, ValidationError, field_validator, model_validator

from monitor.config import (
    RULE_CONFIG_TYPES,
    SINK_CONFIG_TYPES,
    Config,
    config_from_dict,
    format_validation_errors,
)
from monitor.config.types import FrozenModel
from monitor.errors import ConfigError

BAD_CONFIGS = [
    # unknown keys, at every nesting level
    pytest.param(config(extra={}), ["extra: unknown key"], id="unknown-section"),
    pytest.param(
        config(api=api(tokn="x")),
        ["api.tokn: unknown key (did you mean 'token'?)"],
        id="unknown-api-key",
    ),
    pytest.param(
        config(schedule={"intervall": "5m"}),
        ["schedule.intervall: unknown key (did you mean 'interval'?)"],
        id="schedule",
    ),
    pytest.param(config(state={"file": "x.db"}), ["state.file: unknown key"], id="state"),
    pytest.param(config(delivery={"retries": 3}), ["delivery.retries: unknown key"], id="delivery"),
    pytest.param(
        config(log={"lvl": "info"}), ["log.lvl: unknown key (did you mean 'level'?)"], id="log"
    ),
    pytest.param(
        config(sinks=[webhook(), slack(), log_sink(levle="info")]),
        ["sinks[2] (audit).levle: unknown key (did you mean 'level'?)"],
        id="sink-key",
    ),
    pytest.param(
        config(sinks=[webhook(headers={"X-A": "1"}, header={})]),
        ["sinks[0] (ops).header: unknown key (did you mean 'headers'?)"],
        id="webhook-key",
    ),
    pytest.param(
        config(sinks=[log_sink(url=HOOK_URL)]),
        ["sinks[0] (audit).url: unknown key"],
        id="key-of-another-sink-type",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(fild="cash")]),
        ["rules[1] (restriction).fild: unknown key"],
        id="rule-key",
    ),
    pytest.param(
        config(rules=[restriction(op="<")]),
        ["rules[0] (restriction).op: unknown key"],
        id="key-of-another-rule-type",
    ),
    # missing things
    pytest.param(config(api=DROP), ["api: give [api] or at least one [[sources]]"], id="no-api"),
    pytest.param(config(api=api(url=DROP)), ["api.url: required key missing"], id="no-api-url"),
    pytest.param(config(sinks=DROP), ["sinks: required key missing"], id="no-sinks-key"),
    pytest.param(config(sinks=[]), ["sinks: must not be empty"], id="empty-sinks"),
    pytest.param(
        config(api=api(token=DROP)),
        ["api: one of token, token_env, token_file is required"],
        id="no-token",
    ),
    pytest.param(
        config(sinks=[webhook(url=DROP)]),
        ["sinks[0] (ops): one of url, url_env, url_file is required"],
        id="no-webhook-url",
    ),
    pytest.param(
        config(rules=[threshold(field=DROP)]),
        ["rules[0] (low-cash).field: required key missing"],
        id="no-threshold-field",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(type=DROP)]),
        ["rules[1] (restriction).type: required key 'type' missing"],
        id="no-rule-type",
    ),
    # secrets given twice
    pytest.param(
        config(api=api(token_env="LIME_TOKEN")),
        ["api: give only one of token, token_env, token_file (got token, token_env)"],
        id="token-and-token-env",
    ),
    pytest.param(
        config(api=api(token=DROP, token_env="LIME_TOKEN", token_file="token")),
        ["api: give only one of token, token_env, token_file (got token_env, token_file)"],
        id="token-env-and-file",
    ),
    pytest.param(
        config(sinks=[webhook(secret_file="hmac")]),
        [
            "sinks[0] (ops): give only one of secret, secret_env, secret_file "
            "(got secret, secret_file)"
        ],
        id="hmac-twice",
    ),
    pytest.param(
        config(sinks=[slack(url_env="SLACK_URL")]),
        ["sinks[0] (chat): give only one of url, url_env, url_file (got url, url_env)"],
        id="slack-url-twice",
    ),
    # values
    pytest.param(
        config(rules=[threshold(), threshold(name="x", op="=<")]),
        [f"rules[1] (x).op: must be one of {OPS}"],
        id="bad-op",
    ),
    pytest.param(
        config(rules=[threshold(value="1000")]),
        ["rules[0] (low-cash).value: must be a number"],
        id="value-string",
    ),
    pytest.param(
        config(rules=[threshold(value=True)]),
        ["rules[0] (low-cash).value: must be a number"],
        id="value-bool",
    ),
    pytest.param(
        config(rules=[threshold(value=float("nan"))]),
        ["rules[0] (low-cash).value: Input should be a finite number"],
        id="value-nan",
    ),
    pytest.param(
        config(rules=[threshold(field="margin_type")]),
        [f"rules[0] (low-cash).field: 'margin_type' is not a numeric field; use one of {NUMERIC}"],
        id="threshold-on-text-field",
    ),
    pytest.param(
        config(rules=[change(field="balance")]),
        [f"rules[0] (platform).field: unknown field 'balance'; use one of {CHANGEABLE}"],
        id="change-unknown-field",
    ),
    pytest.param(
        config(rules=[change(field="account_number")]),
        [f"rules[0] (platform).field: unknown field 'account_number'; use one of {CHANGEABLE}"],
        id="change-account-number",
    ),
    pytest.param(
        config(rules=[threshold(severity="fatal")]),
        ["rules[0] (low-cash).severity: must be one of info, warning, critical"],
        id="severity",
    ),
    pytest.param(
        config(log={"level": "verbose"}),
        ["log.level: must be one of debug, info, warning, error"],
        id="log-level",
    ),
    pytest.param(
        config(rules=[threshold(name="low cash")]),
        ["rules[0].name: may contain only letters, digits and _ . : -"],
        id="name-pattern",
    ),
    pytest.param(
        config(rules=[threshold(name="")]), ["rules[0].name: must not be empty"], id="name-empty"
    ),
    pytest.param(
        config(rules=[threshold(accounts=[""])]),
        ["rules[0] (low-cash).accounts[0]: must not be empty"],
        id="empty-account-glob",
    ),
    pytest.param(
        config(rules=[threshold(accounts=[])]),
        ["rules[0] (low-cash).accounts: must not be empty"],
        id="empty-accounts-list",
    ),
    pytest.param(
        config(rules=[threshold(sinks=[])]),
        ["rules[0] (low-cash).sinks: must not be empty"],
        id="empty-sinks-list",
    ),
    pytest.param(
        config(api=api(url="api.lime.co/accounts")),
        ["api.url: must be an http:// or https:// URL"],
        id="api-url",
    ),
    pytest.param(
        config(sinks=[webhook(url="ftp://hooks.example.com/HOOKSECRET")]),
        ["sinks[0] (ops).url: must be an http:// or https:// URL"],
        id="webhook-url",
    ),
    pytest.param(
        config(api=api(down_after=0)),
        ["api.down_after: must be at least 1"],
        id="down-after",
    ),
    pytest.param(
        config(sinks=["ops"]),
        ["sinks[0]: Input should be a valid dictionary or object to extract fields from"],
        id="sink-not-a-table-says-it-once",
    ),
    # durations
    pytest.param(
        config(schedule={"interval": "500ms"}),
        ["schedule.interval: must be at least 1s"],
        id="interval-below-1s",
    ),
    pytest.param(
        config(schedule={"interval": 0}),
        ["schedule.interval: must be at least 1s"],
        id="interval-zero",
    ),
    pytest.param(
        config(schedule={"interval": "5 minutes"}),
        [f"schedule.interval: {DURATION_HELP}"],
        id="interval-words",
    ),
    pytest.param(
        config(delivery={"max_age": -1}),
        ["delivery.max_age: must not be negative"],
        id="negative-number",
    ),
    pytest.param(
        config(api=api(timeout=True)), [f"api.timeout: {DURATION_HELP}"], id="timeout-bool"
    ),
    pytest.param(
        config(schedule={"interval": float("inf")}),
        [f"schedule.interval: {DURATION_HELP}"],
        id="interval-inf",
    ),
    pytest.param(
        config(schedule={"interval": 2**62}),
        ["schedule.interval: must be at most 1d"],
        id="interval-overflows-timedelta",
    ),
    # cross-references
    pytest.param(
        config(rules=[threshold(sinks=["ops", "x"])]),
        ["rules[0] (low-cash).sinks: unknown sink 'x'"],
        id="undefined-sink",
    ),
    pytest.param(
        config(rules=[threshold(), restriction(), threshold()]),
        ["rules[2] (low-cash).name: duplicate rule name 'low-cash'"],
        id="duplicate-rule",
    ),
    pytest.param(
        config(sinks=[webhook(), log_sink(name="ops")]),
        ["sinks[1] (ops).name: duplicate sink name 'ops'"],
        id="duplicate-sink",
    ),
    pytest.param(
        config(rules=[restriction(name="source_down")]),
        ["rules[0] (source_down).name: 'source_down' is the built-in rule"],
        id="reserved-rule-name",
    ),
    pytest.param(
        config(
            sinks=[webhook(), webhook()],
            rules=[restriction(sinks=["nowhere"]), restriction(name="source_down")],
        ),
        [
            "sinks[1] (ops).name: duplicate sink name 'ops'",
            "rules[0] (restriction).sinks: unknown sink 'nowhere'",
            "rules[1] (source_down).name: 'source_down' is the built-in rule",
        ],
        id="several-reference-problems",
    ),
    # OAuth2
    pytest.param(
        config(api=api(oauth=oauth())),
        ["api: give either oauth or token, not both"],
        id="oauth-and-token",
    ),
    pytest.param(
        config(api=api(token=DROP, token_env="LIME_TOKEN", oauth=oauth())),
        ["api: give either oauth or token_env, not both"],
        id="oauth-and-token-env",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(password=DROP))),
        ["api.oauth: one of password, password_env, password_file is required"],
        id="oauth-no-password",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(password_env="LIME_PASSWORD"))),
        [
            "api.oauth: give only one of password, password_env, password_file (got password, "
            "password_env)"
        ],
        id="oauth-two-passwords",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(scope="openid"))),
        ["api.oauth.scope: unknown key"],
        id="oauth-unknown-key",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(token_url="ftp://auth.lime.co/token"))),
        ["api.oauth.token_url: must be an http:// or https:// URL"],
        id="oauth-token-url",
    ),
    pytest.param(
        config(api=api(token=DROP, oauth=oauth(renew_before="soon"))),
        [f"api.oauth.renew_before: {DURATION_HELP}"],
        id="oauth-renew-before",
    ),
    # several sources
    pytest.param(
        config(api=DROP, sources=[source(), source()]),
        ["sources[1] (family).name: duplicate source name 'family'"],
        id="duplicate-source",
    ),
    pytest.param(
        config(sources=[source(name="default")]),
        ["sources[0] (default).name: 'default' is the name of [api]"],
        id="source-named-default",
    ),
    pytest.param(
        config(api=DROP, sources=[source(token=DROP)]),
        ["sources[0] (family): one of token, token_env, token_file is required"],
        id="source-without-token",
    ),
    pytest.param(
        config(api=DROP, sources=[source(token=DROP, oauth=oauth(client_id=DROP))]),
        ["sources[0] (family).oauth: one of client_id, client_id_env, client_id_file is required"],
        id="source-oauth-no-client-id",
    ),
    pytest.param(
        config(api=DROP, sources=[source(interval="0.5s")]),
        ["sources[0] (family).interval: must be at least 1s"],
        id="source-interval",
    ),
    pytest.param(
        config(api=DROP, sources=[source(name="the family")]),
        ["sources[0].name: may contain only letters, digits and _ . : -"],
        id="source-name",
    ),
    pytest.param(
        config(api=DROP, sources=[source(nmae="fund")]),
        ["sources[0] (family).nmae: unknown key (did you mean 'name'?)"],
        id="source-key",
    ),
    pytest.param(
        config(rules=[threshold(sources=["fund"])]),
        ["rules[0] (low-cash).sources: unknown source 'fund'"],
        id="rule-unknown-source",
    ),
    pytest.param(
        config(rules=[threshold(sources=[])]),
        ["rules[0] (low-cash).sources: must not be empty"],
        id="rule-empty-sources",
    ),
    pytest.param(
        config(api=DROP, sources=[]),
        ["api: give [api] or at least one [[sources]]"],
        id="no-api-no-sources",
    ),
    pytest.param(
        config(api=api(url=DROP, bogus=1), rules=[threshold(op="=")]),
        [
            "api.url: required key missing",
            "api.bogus: unknown key",
            f"rules[0] (low-cash).op: must be one of {OPS}",
        ],
        id="several-problems-in-order",
    ),
]


@pytest.mark.parametrize(("data", "expected"), BAD_CONFIGS)
def test_bad_config_lists_each_problem_by_key(data: dict[str, Any], expected: list[str]) -> None:
    """A bad config raises ConfigError with one 'key.path: message' line per problem."""
    assert problems(data) == expected


@pytest.mark.parametrize(("data", "expected"), BAD_CONFIGS)
def test_no_problem_message_contains_a_secret(data: dict[str, Any], expected: list[str]) -> None:
    """Neither the error's text nor its problem lines ever quote a token, URL or HMAC key."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, base_dir=BASE_DIR)
    text = "\n".join([str(info.value), repr(info.value), *info.value.problems])
    assert not [secret for secret in SECRETS if secret in text]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(rules=[restriction(type="restriction_chnage")]),
            "rules[0] (restriction).type: unknown rule type 'restriction_chnage' (known: ",
            id="rule-type-typo",
        ),
        pytest.param(
            config(sinks=[webhook(), slack(type="mail")]),
            "sinks[1] (chat).type: unknown sink type 'mail' (known: ",
            id="sink-type",
        ),
    ],
)
def test_unknown_type_names_the_known_ones(data: dict[str, Any], expected: str) -> None:
    """An unknown rule or sink type names the typo and lists every known type."""
    [line] = problems(data)
    assert line.startswith(expected)
    known = SINK_CONFIG_TYPES if "sink" in expected else RULE_CONFIG_TYPES
    assert line.endswith(f"(known: {', '.join(sorted(known))})")


def test_format_validation_errors_works_on_a_raw_validation_error() -> None:
    """format_validation_errors turns pydantic's error into lines without the offending value."""
    with pytest.raises(ValidationError) as info:
        Config.model_validate(config(api=api(token=12345), rules=[threshold(op="~")]))
    assert format_validation_errors(info.value) == [
        "api.token: Input should be a valid string",
        f"rules[0].op: must be one of {OPS}",
    ]


# --------------------------------------------------------------------------- keys, never prose


@pytest.mark.parametrize(
    "summary",
    [
        pytest.param('{{ "{:\\nsinks: x}".format(1) }}', id="continuation-names-a-section"),
        pytest.param('{{ "{:\\nwhen: x}".format(1) }}', id="continuation-names-a-key"),
    ],
)
def test_a_message_line_that_looks_like_a_key_stays_in_its_problem(summary: str) -> None:
    """A validator's message is never parsed for keys: a template error whose second line reads
    like ``sinks: ...`` is one problem of the template's key, not a problem of another key."""
    [line] = problems(config(rules=[restriction(summary=summary)]))
    assert line.startswith("rules[0] (restriction).summary: bad template: line 1: ValueError: ")
    assert "\nsinks: x" in line or "\nwhen: x" in line


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(sinks=[webhook(), slack(url=DROP, url_env="SLACK_URL", url_file="u")]),
            ["sinks[1] (chat): give only one of url, url_env, url_file (got url_env, url_file)"],
            id="sink-by-name",
        ),
        pytest.param(
            config(rules=[threshold(), restriction(), change(), threshold(name="x", value="1")]),
            ["rules[3] (x).value: must be a number"],
            id="rule-by-name",
        ),
        pytest.param(
            config(api=DROP, sources=[source(interval="0.5s")]),
            ["sources[0] (family).interval: must be at least 1s"],
            id="source-by-name",
        ),
        pytest.param(
            config(mute=[{"name": "night", "start": "25:00"}]),
            ["mute[0] (night).start: must be a time like '08:30' (24-hour HH:MM)"],
            id="mute-by-name",
        ),
        pytest.param(
            config(rules=[threshold(name="low cash", value="1")]),
            [
                "rules[0].name: may contain only letters, digits and _ . : -",
                "rules[0].value: must be a number",
            ],
            id="no-name-when-the-name-is-not-one",
        ),
        pytest.param(
            config(sinks=[{"type": "log"}]),
            ["sinks[0].name: required key missing"],
            id="no-name-when-it-is-missing",
        ),
        pytest.param(
            config(rules=[threshold(), threshold(name="x", sinks=["nowhere"])]),
            ["rules[1] (x).sinks: unknown sink 'nowhere'"],
            id="cross-reference-by-name",
        ),
    ],
)
def test_problems_name_the_item_of_a_list(data: dict[str, Any], expected: list[str]) -> None:
    """A problem in a ``[[sinks]]``, ``[[rules]]``, ``[[sources]]`` or ``[[mute]]`` table names
    the table by its index and its name, so the reader finds it in a long file."""
    assert problems(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(schedule={"intervall": "5m"}),
            "schedule.intervall: unknown key (did you mean 'interval'?)",
            id="schedule",
        ),
        pytest.param(
            config(shedule={"interval": "5m"}),
            "shedule: unknown key (did you mean 'schedule'?)",
            id="section",
        ),
        pytest.param(
            config(rules=[threshold(fild="cash", field=DROP)]),
            "rules[0] (low-cash).fild: unknown key (did you mean 'field'?)",
            id="rule-key",
        ),
        pytest.param(
            config(rules=[threshold(fo="2m")]),
            "rules[0] (low-cash).fo: unknown key (did you mean 'for'?)",
            id="alias",
        ),
        pytest.param(
            config(sinks=[webhook(secret=DROP, secert_env="HMAC")]),
            "sinks[0] (ops).secert_env: unknown key (did you mean 'secret_env'?)",
            id="sink-key",
        ),
        pytest.param(
            config(api=api(token=DROP, oauth=oauth(clientid="x"))),
            "api.oauth.clientid: unknown key (did you mean 'client_id'?)",
            id="nested",
        ),
        pytest.param(
            config(schedule={"zzzz": 1}),
            "schedule.zzzz: unknown key",
            id="nothing-close",
        ),
    ],
)
def test_unknown_key_suggests_the_nearest(data: dict[str, Any], expected: str) -> None:
    """A mistyped key names the key it is closest to, among those of its table."""
    assert expected in problems(data)


# --------------------------------------------------------------------------- never a traceback


def _raise_oserror(value: str) -> str:
    raise OSError(f"cannot look {value} up")


class _Inner(FrozenModel):
    a: Annotated[str, AfterValidator(_raise_oserror)] = "a"
    b: str = "b"

    @field_validator("b")
    @classmethod
    def _b(cls, value: str) -> str:
        raise TypeError(value)


class _Outer(FrozenModel):
    inner: _Inner = _Inner()
    items: tuple[_Inner, ...] = ()
    c: int = 0

    @model_validator(mode="after")
    def _c(self) -> _Outer:
        if self.c:
            raise RecursionError("maximum recursion depth exceeded")
        return self


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"inner": {"a": "x"}},
            ["inner.a: cannot be checked (OSError)"],
            id="annotated-validator",
        ),
        pytest.param(
            {"items": [{}, {"b": "y"}]},
            ["items[1].b: cannot be checked (TypeError)"],
            id="field-validator",
        ),
        pytest.param({"c": 1}, ["cannot be checked (RecursionError)"], id="model-validator"),
    ],
)
def test_a_validator_that_raises_another_exception_is_a_problem_of_its_key(
    data: dict[str, Any], expected: list[str]
) -> None:
    """Whatever a validator of a config table raises (a library's OSError, TypeError or
    RecursionError) is a problem line for the key it was checking, never a traceback; the line
    names the exception's class only (its text may quote a secret)."""
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(data)
    assert format_validation_errors(info.value) == expected


def test_a_pathological_template_is_a_problem_of_its_key() -> None:
    """Thousands of nested parentheses in a summary are a bad template of that key."""
    summary = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    [line] = problems(config(rules=[restriction(summary=summary)]))
    assert line.startswith("rules[0] (restriction).summary: bad template: ")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(rules=[restriction(summary="x" * 10_001)]),
            "rules[0] (restriction).summary: must be at most 10000 characters",
            id="template",
        ),
        pytest.param(
            config(rules=[expression(when="cash > 1.0" + " && cash > 1.0" * 200)]),
            "rules[0] (pdt).when: must be at most 2000 characters",
            id="expression",
        ),
    ],
)
def test_rule_texts_have_a_length_limit(data: dict[str, Any], expected: str) -> None:
    """Templates and expressions are bounded: the CEL library's parser overflows the C stack
    (a segfault) on an expression of some ten thousand terms."""
    assert problems(data) == [expected]


# --------------------------------------------------------------------------- URLs

_PORT = "port must be a number from 1 to 65535"
_URL_KEYS = [
    ("api.url", "api.url", "/accounts"),
    ("sources[0].url", "sources[0] (family).url", "/accounts"),
    ("sources[0].oauth.token_url", "sources[0] (family).oauth.token_url", "/token"),
    ("sinks[0].url", "sinks[0] (ops).url", "/hook/HOOKSECRET"),
    ("sinks[1].url", "sinks[1] (chat).url", "/services/SLACKSECRET"),
    ("sinks[2].url", "sinks[2] (am).url", ""),
    ("sinks[2].generator_url", "sinks[2] (am).generator_url", "/status"),
    ("sinks[3].api_url", "sinks[3] (tg).api_url", ""),
    ("sinks[4].url", "sinks[4] (pd).url", "/v2/enqueue"),
]
_BAD_URLS = [
    pytest.param("http://127.0.0.1:99999{path}", _PORT, id="port-too-big"),
    pytest.param("http://127.0.0.1:0{path}", _PORT, id="port-zero"),
    pytest.param("http://127.0.0.1:http{path}", _PORT, id="port-not-a-number"),
    pytest.param("http://{path}", "must name a host", id="no-host"),
    pytest.param("http://exa mple.com{path}", "must not contain spaces or control characters",
                 id="space"),
    pytest.param("http://example.com\n{path}", "must not contain spaces or control characters",
                 id="newline"),
    pytest.param("http://[::1{path}", "is not a valid URL", id="broken-ipv6"),
    pytest.param("http://a..b{path}", "has an invalid host name", id="empty-label"),
    pytest.param("http://" + "a" * 64 + ".com{path}", "has an invalid host name", id="long-label"),
    pytest.param("ftp://example.com{path}", "must be an http:// or https:// URL", id="scheme"),
]  # fmt: skip


def _with_every_url() -> dict[str, Any]:
    telegram = {"name": "tg", "type": "telegram", "bot_token": "b", "chat_id": 1}
    pagerduty = {"name": "pd", "type": "pagerduty", "routing_key": "r"}
    alertmanager = {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093"}
    return config(
        sources=[source(token=DROP, oauth=oauth())],
        sinks=[webhook(), slack(), alertmanager, telegram, pagerduty],
    )


@pytest.mark.parametrize(("url", "message"), _BAD_URLS)
@pytest.mark.parametrize(("path", "key", "tail"), _URL_KEYS)
def test_every_url_is_checked_at_load(
    path: str, key: str, tail: str, url: str, message: str
) -> None:
    """Every URL key (sources, token URL, sinks, secret or not) is checked when the file loads:
    scheme, host, port range; ``http://127.0.0.1:99999/hook`` used to pass check-config and then
    fail every delivery. The message never quotes the URL (a webhook's is a secret)."""
    value = url.format(path=tail)
    assert problems(set_key(_with_every_url(), path, value)) == [f"{key}: {message}"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]:8443/x",
        "https://bücher.example/x",
        "http://alertmanager_1:9093",
        "https://user:pw@host.example/p?q=1#f",
    ],
)
def test_good_urls_pass(url: str) -> None:
    """IP literals, international host names, Docker-style names and credentials are URLs."""
    for path, _, _ in _URL_KEYS:
        assert config_from_dict(set_key(_with_every_url(), path, url), base_dir=BASE_DIR)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({**config(), "": []}, '"": unknown key', id="empty"),
        pytest.param({**config(), "a b": 1}, '"a b": unknown key', id="space"),
        pytest.param(
            config(schedule={'x"\n': 1}), 'schedule."x\\"\\u000A": unknown key', id="escaped"
        ),
    ],
)
def test_a_key_that_needs_quotes_is_named_quoted(data: dict[str, Any], expected: str) -> None:
    """A key TOML must quote is named as the file spells it, quoted, so that every problem line
    starts with its key (the empty key used to give a line with none; found by the property
    tests)."""
    assert problems(data) == [expected]

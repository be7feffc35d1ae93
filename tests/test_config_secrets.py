"""Tests for monitor.config.secrets: resolving a secret where the config says it is, and the
refs that name each secret by its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from config_helpers import (
    BASE_DIR,
    CLIENT_SECRET,
    DROP,
    HMAC,
    HOOK_URL,
    SECRETS,
    SLACK_URL,
    TOKEN,
    api,
    config,
    log_sink,
    oauth,
    slack,
    source,
    webhook,
    write,
)
from pydantic import SecretStr, ValidationError

from monitor.config import SecretRef, config_from_dict, resolve_secret
from monitor.config.secrets import Secret, WithSecrets
from monitor.errors import ConfigError


@pytest.mark.parametrize(
    ("env", "file_text", "expected"),
    [
        pytest.param(None, None, TOKEN, id="inline"),
        pytest.param(TOKEN, None, TOKEN, id="env"),
        pytest.param(None, f"{TOKEN}\n", TOKEN, id="file-trailing-newline"),
        pytest.param(None, f"{TOKEN}\r\n\n", TOKEN, id="file-crlf"),
        pytest.param(None, f"  {TOKEN}", f"  {TOKEN}", id="file-keeps-leading-space"),
    ],
)
def test_resolve_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    file_text: str | None,
    expected: str,
) -> None:
    """A secret comes inline, from the environment, or from a file without its newline."""
    if env is not None:
        monkeypatch.setenv("LIME_TOKEN", env)
        ref = SecretRef("api.token_env", None, "LIME_TOKEN", None)
    elif file_text is not None:
        ref = SecretRef("api.token_file", None, None, write(tmp_path / "token", file_text))
    else:
        ref = SecretRef("api.token", SecretStr(TOKEN), None, None)
    assert resolve_secret(ref).get_secret_value() == expected


def test_resolve_secret_expands_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A $CREDENTIALS_DIRECTORY path is expanded when the secret is read (systemd credentials)."""
    write(tmp_path / "token", TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    ref = SecretRef("api.token_file", None, None, Path("$CREDENTIALS_DIRECTORY/token"))
    assert resolve_secret(ref).get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("env-unset", "api.token_env: environment variable LIME_TOKEN is not set"),
        pytest.param("env-empty", "api.token_env: environment variable LIME_TOKEN is not set"),
        pytest.param("file-missing", "api.token_file: cannot read {dir}/absent: "),
        pytest.param("file-is-dir", "api.token_file: cannot read {dir}: "),
        pytest.param("file-empty", "api.token_file: {dir}/token is empty"),
        pytest.param("file-newline-only", "api.token_file: {dir}/token is empty"),
        pytest.param("nothing", "api.token: no secret given"),
    ],
)
def test_resolve_secret_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, expected: str
) -> None:
    """A secret that cannot be read is a ConfigError naming the key and where it looked."""
    monkeypatch.delenv("LIME_TOKEN", raising=False)
    refs = {
        "env-unset": SecretRef("api.token_env", None, "LIME_TOKEN", None),
        "env-empty": SecretRef("api.token_env", None, "LIME_TOKEN", None),
        "file-missing": SecretRef("api.token_file", None, None, tmp_path / "absent"),
        "file-is-dir": SecretRef("api.token_file", None, None, tmp_path),
        "file-empty": SecretRef("api.token_file", None, None, write(tmp_path / "token", "")),
        "file-newline-only": SecretRef("api.token_file", None, None, tmp_path / "token"),
        "nothing": SecretRef("api.token", None, None, None),
    }
    if case == "env-empty":
        monkeypatch.setenv("LIME_TOKEN", "")
    if case == "file-newline-only":
        write(tmp_path / "token", "\n")
    with pytest.raises(ConfigError) as info:
        resolve_secret(refs[case])
    assert str(info.value).startswith(expected.format(dir=tmp_path))


def test_secrets_stay_out_of_repr_and_str() -> None:
    """repr() and str() of a loaded Config, its sections and its secret refs hide every secret."""
    loaded = config_from_dict(config(), base_dir=BASE_DIR)
    texts = [repr(loaded), str(loaded), repr(loaded.sinks), repr(loaded.secret_refs())]
    texts += [loaded.summary(), *(ref.describe() for ref in loaded.secret_refs())]
    assert not [secret for secret in SECRETS for text in texts if secret in text]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            config(),
            [
                ("api.token", TOKEN, None, None),
                ("sinks[0] (ops).url", HOOK_URL, None, None),
                ("sinks[0] (ops).secret", HMAC, None, None),
                ("sinks[1] (chat).url", SLACK_URL, None, None),
            ],
            id="inline",
        ),
        pytest.param(
            config(
                api=api(token=DROP, token_env="LIME_TOKEN"),
                sinks=[
                    log_sink(),
                    webhook(url=DROP, url_file="hook", secret=DROP),
                    slack(url=DROP, url_env="SLACK"),
                ],
            ),
            [
                ("api.token_env", None, "LIME_TOKEN", None),
                ("sinks[1] (ops).url_file", None, None, BASE_DIR / "hook"),
                ("sinks[2] (chat).url_env", None, "SLACK", None),
            ],
            id="env-and-file",
        ),
    ],
)
def test_secret_refs(
    data: dict[str, Any], expected: list[tuple[str, str | None, str | None, Path | None]]
) -> None:
    """secret_refs() lists every secret with the key that names it, in config order."""
    refs = config_from_dict(data, base_dir=BASE_DIR).secret_refs()
    got = [(r.key, r.value.get_secret_value() if r.value else None, r.env, r.file) for r in refs]
    assert got == expected


def test_oauth_secret_refs_name_their_keys() -> None:
    """Each OAuth secret is a ref named by its key (its value hidden in reprs), relative
    *_file paths joined to the config folder, under [api.oauth] or [sources.oauth]."""
    data = config(
        api=api(token=DROP, oauth=oauth(password=DROP, password_file="secrets/pw")),
        sources=[source(token=DROP, oauth=oauth(client_secret=DROP, client_secret_env="CS"))],
        sinks=[log_sink()],
    )
    loaded = config_from_dict(data, base_dir=BASE_DIR)
    refs = loaded.secret_refs()

    assert CLIENT_SECRET not in repr(loaded) + repr(refs)
    assert [(r.key, r.env, r.file) for r in refs] == [
        ("api.oauth.client_id", None, None),
        ("api.oauth.client_secret", None, None),
        ("api.oauth.username", None, None),
        ("api.oauth.password_file", None, BASE_DIR / "secrets" / "pw"),
        ("sources[0] (family).oauth.client_id", None, None),
        ("sources[0] (family).oauth.client_secret_env", "CS", None),
        ("sources[0] (family).oauth.username", None, None),
        ("sources[0] (family).oauth.password", None, None),
    ]


class _Login(WithSecrets):
    """A table with one required and one optional secret, as a sink or [api.oauth] has."""

    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    otp: SecretStr | None = None
    otp_env: str | None = None
    otp_file: Path | None = None

    SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("password"), Secret("otp", required=False))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"password": "pw"}, [], id="required-inline"),
        pytest.param({"password_env": "PW", "otp_file": "otp"}, [], id="env-and-optional-file"),
        pytest.param({}, ["one of password, password_env, password_file is required"], id="none"),
        pytest.param(
            {"password": "pw", "password_file": "pw"},
            ["give only one of password, password_env, password_file (got password, "
             "password_file)"],
            id="twice",
        ),
        pytest.param(
            {"password": "pw", "otp": "1", "otp_env": "OTP"},
            ["give only one of otp, otp_env, otp_file (got otp, otp_env)"],
            id="optional-twice",
        ),
    ],
)  # fmt: skip
def test_secret_spellings(data: dict[str, Any], expected: list[str]) -> None:
    """A secret is spelled at most once, and once if required, whichever spelling is used."""
    try:
        _Login.model_validate(data)
    except ValidationError as exc:
        got = [str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]
    else:
        got = []
    assert got == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"password": "pw"}, ("login.password", "pw", None, None), id="inline"),
        pytest.param({"password_env": "PW"}, ("login.password_env", None, "PW", None), id="env"),
        pytest.param(
            {"password_file": "pw"}, ("login.password_file", None, None, Path("pw")), id="file"
        ),
    ],
)
def test_secret_ref_names_the_spelling_used(
    data: dict[str, Any], expected: tuple[str, str | None, str | None, Path | None]
) -> None:
    """A secret's ref is keyed by the spelling the file used; an unset optional one has none."""
    login = _Login.model_validate(data)
    ref = login.secret_named("password").required_ref(login, "login")
    value = ref.value.get_secret_value() if ref.value is not None else None
    assert (ref.key, value, ref.env, ref.file) == expected
    assert login.secret_named("otp").ref(login, "login") is None


def test_secret_paths_join_the_config_folder() -> None:
    """with_paths_under joins each relative *_file to the config's folder, and only those."""
    login = _Login.model_validate({"password_file": "pw", "otp_file": "/run/otp"})
    moved = login.with_paths_under(BASE_DIR)
    assert (moved.password_file, moved.otp_file) == (BASE_DIR / "pw", Path("/run/otp"))


def test_a_table_must_declare_the_three_spellings_of_its_secrets() -> None:
    """A SECRETS entry without its fields is a mistake found when the class is made."""
    with pytest.raises(TypeError, match=r"^_Broken: secret pin needs pin_env, pin_file$"):

        class _Broken(WithSecrets):
            pin: SecretStr | None = None

            SECRETS: ClassVar[tuple[Secret, ...]] = (Secret("pin"),)


@pytest.mark.parametrize("spelling", ["url_env", "url_file"])
def test_a_url_secret_read_from_elsewhere_is_checked_as_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """A webhook URL from a variable or a file is checked like an inline one when it is read,
    so a bad port is a ConfigError naming the key and the variable, never the URL."""
    bad = "http://127.0.0.1:99999/hook/HOOKSECRET"
    monkeypatch.setenv("TEST_HOOK_URL", bad)
    where = "TEST_HOOK_URL" if spelling == "url_env" else str(write(tmp_path / "hook", bad))
    data = config(sinks=[webhook(url=DROP, **{spelling: where})])
    loaded = config_from_dict(data, base_dir=BASE_DIR)
    [ref] = [r for r in loaded.secret_refs() if r.key.endswith(spelling)]

    with pytest.raises(ConfigError) as info:
        resolve_secret(ref)

    origin = "environment variable TEST_HOOK_URL" if spelling == "url_env" else f"file {where}"
    assert str(info.value) == (
        f"sinks[0] (ops).{spelling}: {origin}: port must be a number from 1 to 65535"
    )
    assert "HOOKSECRET" not in str(info.value)


def test_missing_secrets_lists_every_one_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config.missing_secrets() returns a problem line for every secret that cannot be read
    here, in file order, so run, once and check-config report them all at once, not one per
    attempt; a secret that can be read is not listed."""
    for name in ("TEST_LIME_TOKEN", "TEST_SLACK_URL", "TEST_HMAC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEST_HMAC", HMAC)
    data = config(
        api=api(token=DROP, token_env="TEST_LIME_TOKEN"),
        sources=[source(token=DROP, oauth=oauth(password=DROP, password_file="absent"))],
        sinks=[
            webhook(secret=DROP, secret_env="TEST_HMAC"),
            slack(url=DROP, url_env="TEST_SLACK_URL"),
        ],
    )
    loaded = config_from_dict(data, base_dir=tmp_path)

    assert loaded.missing_secrets() == [
        "api.token_env: environment variable TEST_LIME_TOKEN is not set",
        f"sources[0] (family).oauth.password_file: cannot read {tmp_path / 'absent'}: "
        "No such file or directory",
        "sinks[1] (chat).url_env: environment variable TEST_SLACK_URL is not set",
    ]
    assert config_from_dict(config(), base_dir=tmp_path).missing_secrets() == []

"""``[api]`` and ``[[sources]]``: where balances are fetched and how the fetch authenticates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.config.secrets import SecretRef, check_secret_spellings, make_ref
from monitor.config.types import Duration, FrozenModel, HttpUrlText, Name, at_least_1s, public_url
from monitor.errors import ConfigError


class OAuthConfig(FrozenModel):
    """``[api.oauth]``: the OAuth2 password grant that issues (and renews) access tokens."""

    token_url: HttpUrlText
    client_id: SecretStr | None = None
    client_id_env: str | None = None
    client_id_file: Path | None = None
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    username: SecretStr | None = None
    username_env: str | None = None
    username_file: Path | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: Path | None = None
    #: Renew this long before the token would expire (by ``expires_in`` or at 03:00 ET).
    renew_before: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _secrets(self) -> OAuthConfig:
        for name in OAUTH_SECRETS:
            check_secret_spellings(self, name, required=True)
        return self

    def refs(self, prefix: str) -> dict[str, SecretRef]:
        return {
            name: make_ref(
                prefix,
                name,
                getattr(self, name),
                getattr(self, f"{name}_env"),
                getattr(self, f"{name}_file"),
            )
            for name in OAUTH_SECRETS
        }


OAUTH_SECRETS = ("client_id", "client_secret", "username", "password")


class SourceBase(FrozenModel):
    """What every source has: where to fetch, how to authenticate, when it is down."""

    url: HttpUrlText
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: Path | None = None
    oauth: OAuthConfig | None = None
    timeout: Duration = timedelta(seconds=10)
    down_after: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_token(self) -> SourceBase:
        if self.oauth is not None:
            given = [k for k in ("token", "token_env", "token_file") if getattr(self, k)]
            if given:
                raise ValueError(f"give either oauth or {', '.join(given)}, not both")
        else:
            check_secret_spellings(self, "token", required=True)
        return self

    def token_ref_at(self, prefix: str) -> SecretRef | None:
        if self.oauth is not None:
            return None
        return make_ref(prefix, "token", self.token, self.token_env, self.token_file)

    def secret_refs_at(self, prefix: str) -> list[SecretRef]:
        if self.oauth is not None:
            return list(self.oauth.refs(f"{prefix}.oauth").values())
        ref = self.token_ref_at(prefix)
        return [ref] if ref is not None else []

    def credentials(self) -> str:
        """Where the token comes from, for summaries (never the token)."""
        if self.oauth is not None:
            return f"OAuth2 password grant at {public_url(self.oauth.token_url)}"
        ref = self.token_ref_at("")
        return f"token from {ref.describe()}" if ref is not None else "no token"


class ApiConfig(SourceBase):
    """``[api]``: the single source named ``default``."""

    @property
    def token_ref(self) -> SecretRef:
        ref = self.token_ref_at("api")
        if ref is None:
            raise ConfigError("api: the token comes from [api.oauth]")
        return ref


class SourceConfig(SourceBase):
    """``[[sources]]``: one login of several, polled on its own schedule."""

    name: Name
    #: Overrides ``[schedule] interval`` for this source (with ``market_hours``: the interval in
    #: session; ``off_hours_interval`` stays). Not allowed with ``[schedule] cron``.
    interval: Duration | None = None

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        return at_least_1s(value)

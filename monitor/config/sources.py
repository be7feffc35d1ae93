"""``[api]`` and ``[[sources]]``: where balances are fetched and how the fetch authenticates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from monitor.config.secrets import Secret, SecretRef, WithSecrets
from monitor.config.types import (
    HttpUrlText,
    Interval,
    Name,
    Timeout,
    WsUrlText,
    public_url,
    within,
)
from monitor.errors import ConfigError


class OAuthConfig(WithSecrets):
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
    renew_before: Annotated[timedelta, within("0s", "1h")] = timedelta(minutes=5)
    timeout: Timeout = timedelta(seconds=10)

    SECRETS: ClassVar[tuple[Secret, ...]] = tuple(
        Secret(name) for name in ("client_id", "client_secret", "username", "password")
    )

    def refs(self, prefix: str) -> dict[str, SecretRef]:
        return {s.name: s.required_ref(self, prefix) for s in self.SECRETS}


OAUTH_SECRETS = tuple(s.name for s in OAuthConfig.SECRETS)

_TOKEN = Secret("token")


class SourceBase(WithSecrets):
    """What every source has: where to fetch, how to authenticate, when it is down."""

    url: HttpUrlText
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: Path | None = None
    oauth: OAuthConfig | None = None
    timeout: Timeout = timedelta(seconds=10)
    down_after: int = Field(default=3, ge=1, le=1000)
    #: Also listen to the account stream (WebSocket) and treat each push as a fresh snapshot of
    #: the accounts it carries; polling goes on as reconciliation.
    stream: bool = False
    #: The stream's address; by default ``url`` with ``https`` -> ``wss`` (``http`` -> ``ws``).
    stream_url: WsUrlText | None = None
    #: Explain every firing alert on a money field with the transactions journal's entries
    #: (as ``explain = true`` on each rule).
    explain: bool = False

    #: The token, unless ``oauth`` issues them.
    SECRETS: ClassVar[tuple[Secret, ...]] = (_TOKEN,)

    def _check_secrets(self) -> None:
        if self.oauth is None:
            _TOKEN.check(self)
            return
        # An empty value counts as not given here (as it always has), unlike in Secret.check.
        given = [key for key, got in zip(_TOKEN.keys, _TOKEN.read(self), strict=True) if got]
        if given:
            raise ValueError(f"give either oauth or {', '.join(given)}, not both")

    def _paths_under(self, base_dir: Path) -> dict[str, Any]:
        paths = super()._paths_under(base_dir)
        if self.oauth is not None:
            paths["oauth"] = self.oauth.with_paths_under(base_dir)
        return paths

    def token_ref_at(self, prefix: str) -> SecretRef | None:
        if self.oauth is not None:
            return None
        return _TOKEN.required_ref(self, prefix)

    def secret_refs_at(self, prefix: str) -> list[SecretRef]:
        if self.oauth is not None:
            return list(self.oauth.refs(f"{prefix}.oauth").values())
        ref = self.token_ref_at(prefix)
        return [ref] if ref is not None else []

    @property
    def stream_address(self) -> str:
        """Where the account stream is: ``stream_url``, or ``url`` as a WebSocket URL."""
        if self.stream_url is not None:
            return self.stream_url
        scheme, rest = self.url.split(":", 1)
        return ("wss" if scheme.lower() == "https" else "ws") + ":" + rest

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
    interval: Interval | None = None

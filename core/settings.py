"""Process settings (pydantic-settings): environment variables ``TANDEM_*`` and ``.env``.

Settings say *where* and *how* a process runs (files, URLs, logging, HTTP); *what* it trades
lives in the manifest (:mod:`tandem.core.manifest`). Every variable is documented in
``.env.example``. Secrets are :class:`~pydantic.SecretStr`: they print as ``**********``
and :meth:`Settings.safe_dict` is what drivers log.

Environment variables win over ``.env``, which wins over defaults. Unknown ``TANDEM_*``
keys in the environment or ``.env`` are errors (a typo must not silently fall back to a default). The ``.env``
must be UTF-8 text of at most :data:`MAX_ENV_FILE_BYTES`; values quoted in messages are
shortened (:func:`tandem.core.quoting.quote`).

:class:`Settings` holds the fields and their rules; pydantic-settings reads them from the
environment and ``.env`` (a subclass built on first use). With no ``TANDEM_*`` variable and
no ``.env`` there is nothing to read, and :func:`load_settings` returns the defaults without
importing pydantic-settings (~0.12 s, a tenth of a warm 10-asset ``tandem-backtest run``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from tandem.core.quoting import clip, quote

ENV_PREFIX = "TANDEM_"
# TANDEM_* variables that belong to other parts of the project, not to Settings.
FOREIGN_VARIABLES = frozenset({"TANDEM_TEST_DATA", "TANDEM_WARMUP"})
#: ``TANDEM_WARMUP`` (read by :mod:`tandem.core.warmup`): its words, by meaning.
WARMUP_WORDS: dict[str, tuple[str, ...]] = {
    "never": ("0", "false", "no", "off", "never"),
    "always": ("1", "true", "yes", "on", "always"),
    "auto": ("", "auto"),
}
#: A .env is a few dozen lines; anything this big is the wrong file.
MAX_ENV_FILE_BYTES = 1024 * 1024


class SettingsError(ValueError):
    """Invalid settings; the message names the environment variable."""

    def __init__(self, message: str, *, variable: str | None = None):
        super().__init__(message)
        self.variable = variable


def check_url(v: str | None, schemes: tuple[str, ...], what: str) -> str | None:
    """``v`` as an exchange endpoint URL of one of ``schemes`` (None/"" = not set), else a
    ValueError saying what is wrong. Also what ``tandem-daemon run --rest-url/--ws-url``
    check: unchecked there, ``--rest-url notaurl`` retried load_markets forever."""
    if v is None or v == "":
        return None
    scheme, sep, rest = v.partition("://")
    if not sep or scheme not in schemes or not rest or rest.startswith("/"):
        raise ValueError(f"{what} must be a {' or '.join(s + '://' for s in schemes)} URL, got {quote(v)}")
    from urllib.parse import urlsplit

    try:
        urlsplit(v).port  # noqa: B018 - parsing it is the check (":99999", ":abc")
    except ValueError:
        raise ValueError(f"{what} has no valid port (0-65535): {quote(v)}") from None
    return v


class Settings(BaseModel):
    """Runtime settings of the daemon and the backtest (build them with :func:`load_settings`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    manifest_path: Path = Field(default=Path("manifest.json"), description="strategy manifest file")
    profile: str | None = Field(default=None, description="manifest profile; empty = default_profile")
    data_dir: Path = Field(default=Path("data"), description="candle store root")
    state_db: Path = Field(default=Path("state/tandem.sqlite"), description="daemon SQLite state")
    exchange_rest_url: str | None = Field(default=None, description="override ccxt urls.api.public")
    exchange_ws_url: str | None = Field(default=None, description="override ccxt urls.api.ws spot")
    #: auto = JSON lines when stderr is not a terminal (a service), console on one
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    http_host: str = Field(default="127.0.0.1", min_length=1)
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 = any free port")
    http_token: SecretStr | None = Field(default=None, description="bearer token for HTTP endpoints")
    grace_period_s: float = Field(default=10.0, ge=0, le=3600, description="wait for late assets")
    # --- ops (daemon/ops): HTTP on/off, systemd notify, health thresholds ---
    http_enabled: bool = Field(default=True, description="serve /health, /metrics, /positions, /fills")
    notify: bool = Field(default=True, description="sd_notify READY/WATCHDOG/STOPPING if $NOTIFY_SOCKET")
    health_stale_feed_s: float = Field(default=90.0, gt=0, le=86400, description="feed silent this long = degraded")
    health_slice_lag_s: float = Field(default=60.0, gt=0, le=86400, description="closed slice unstepped this long = degraded")
    numba_cache_dir: Path | None = Field(default=None, description="sets NUMBA_CACHE_DIR")
    # --- notifications (daemon/ops/alerts.py): Apprise URLs, comma-separated; a secret ---
    notify_urls: SecretStr | None = Field(default=None, description="Apprise URLs, comma-separated")

    @field_validator("profile", "numba_cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("manifest_path", "data_dir", "state_db", "numba_cache_dir", mode="before")
    @classmethod
    def _no_blank_ends(cls, v: Any) -> Any:
        # TANDEM_STATE_DB='state/tandem.sqlite ' (a quoted .env value, an env_file's
        # trailing blank) is another file: the daemon started a new journal beside the one
        # it should resume, and the existing positions and fills were out of its sight.
        if isinstance(v, str) and v != v.strip():
            raise ValueError("a path with blanks at its ends (never meant); remove them")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("exchange_rest_url")
    @classmethod
    def _rest(cls, v: str | None) -> str | None:
        return check_url(v, ("http", "https"), "REST URL")

    @field_validator("exchange_ws_url")
    @classmethod
    def _ws(cls, v: str | None) -> str | None:
        return check_url(v, ("ws", "wss"), "websocket URL")

    @field_validator("health_slice_lag_s")
    @classmethod
    def _lag_after_grace(cls, v: float, info: Any) -> float:
        # A slice legitimately waits grace_period_s for late assets: that is not a lag.
        grace = info.data.get("grace_period_s")
        if grace is not None and v <= grace:
            raise ValueError(f"must exceed TANDEM_GRACE_PERIOD_S ({grace:g} s)")
        return v

    @field_validator("http_host")
    @classmethod
    def _host(cls, v: str) -> str:
        # "127.0.0.1 " (a quoted .env value, an env_file's trailing blank) read as a
        # non-loopback name: refused without a token with a message that said to bind
        # 127.0.0.1, and with one the daemon failed at start on a name lookup (exit 1).
        if v != v.strip() or any(ch.isspace() or ord(ch) < 32 for ch in v):
            raise ValueError("a host name or address holds no whitespace")
        return v

    @field_validator("http_token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or v.get_secret_value() == "":
            return None
        token = v.get_secret_value()
        # The server compares the Authorization header's token stripped (HTTP strips a
        # header's ends) and no header carries a newline: a token with blank ends (a quoted
        # .env value, a Docker env_file's trailing blank) or a control character answered
        # 401 to every request, the Docker HEALTHCHECK's included. Refused, not stripped:
        # the secret stays what the user wrote.
        if token != token.strip():
            raise ValueError("token starts or ends with whitespace, which no Authorization "
                             "header can carry; remove it")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in token):
            raise ValueError("token holds a control character (a newline, a tab...); remove it")
        if len(token) < 16:
            raise ValueError("token must be at least 16 characters")
        return v

    @field_validator("notify_urls")
    @classmethod
    def _notify_urls(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip(" ,"):
            return None
        return v

    def safe_dict(self) -> dict[str, Any]:
        """Settings as plain values for logging; secrets masked."""
        out = self.model_dump(mode="json")
        out["http_token"] = "**********" if self.http_token else None
        out["notify_urls"] = "**********" if self.notify_urls else None
        return out

    def apply_numba_cache_dir(self) -> None:
        """Export ``NUMBA_CACHE_DIR`` (call before the first numba import compiles)."""
        if self.numba_cache_dir is not None:
            os.environ["NUMBA_CACHE_DIR"] = str(self.numba_cache_dir)
            from tandem.core.numba_cache import configure_numba_cache

            configure_numba_cache(self.numba_cache_dir)


@functools.cache
def _env_settings() -> type[Settings]:
    """:class:`Settings` read by pydantic-settings: environment variables, then ``.env``."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class EnvSettings(BaseSettings, Settings):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX,
            env_file=".env",
            env_file_encoding="utf-8",
            # Non-TANDEM keys in .env belong to other tools (docker compose...): ignore them;
            # unknown TANDEM_* keys are rejected by load_settings instead.
            extra="ignore",
            # .env.example's rule: an empty value means the default (TANDEM_LOG_LEVEL= was
            # refused; TANDEM_STATE_DB= or TANDEM_DATA_DIR= became ".", the working folder).
            env_ignore_empty=True,
            case_sensitive=False,
            frozen=True,
        )

    return EnvSettings


def _nothing_to_read(env_file: str | Path | None) -> bool:
    """No ``TANDEM_*`` variable (any case, as pydantic-settings matches them) and no .env."""
    if env_file is not None and Path(env_file).is_file():
        return False
    return not any(k.upper().startswith(ENV_PREFIX) and k.upper() not in FOREIGN_VARIABLES
                   for k in os.environ)


def _variable(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + str(loc[0]).upper() if loc else "(settings)"


def _check_env_file(env_file: str | Path | None) -> None:
    """The .env (if it exists) must be readable UTF-8 text of sane size: the two readers
    below (python-dotenv, pydantic-settings) would otherwise raise a bare UnicodeDecodeError."""
    if env_file is None or not Path(env_file).is_file():
        return
    try:
        with open(env_file, "rb") as fh:
            raw = fh.read(MAX_ENV_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"settings: {env_file}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_ENV_FILE_BYTES:
        raise SettingsError(f"settings: {env_file}: larger than {MAX_ENV_FILE_BYTES // 1024} kB; not a .env file")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SettingsError(
            f"settings: {env_file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}); save it as UTF-8"
        ) from None


def _reject_unknown(env_file: str | Path | None, overrides: dict[str, Any]) -> None:
    """Unknown TANDEM_* keys in the environment or the .env file, or unknown override names,
    are typos: ``TANDEM_HTTP_TOKN`` must not leave the HTTP endpoints without a token."""
    fields = set(Settings.model_fields)
    for name in overrides:
        if name not in fields:
            raise SettingsError(f"settings: {_variable((name,))}: unknown setting (see .env.example)",
                                variable=_variable((name,)))
    for key in os.environ:
        up = key.upper()
        if up.startswith(ENV_PREFIX) and up not in FOREIGN_VARIABLES and up[len(ENV_PREFIX):].lower() not in fields:
            raise SettingsError(f"settings: {clip(up)} (in the environment): unknown setting "
                                f"(see .env.example; unset it if it belongs to another tool)",
                                variable=up)
    if env_file is None or not Path(env_file).is_file():
        return
    from dotenv import dotenv_values  # python-dotenv ships with pydantic-settings

    for key in dotenv_values(env_file):
        up = key.upper()
        if up.startswith(ENV_PREFIX) and up not in FOREIGN_VARIABLES and up[len(ENV_PREFIX):].lower() not in fields:
            raise SettingsError(f"settings: {clip(up)} (in {env_file}): unknown setting (see .env.example)",
                                variable=up)


def warmup_mode(value: str | None) -> str:
    """``never``, ``always`` or ``auto`` for a ``TANDEM_WARMUP`` value (None: unset);
    ValueError for any other word (a typo was taken silently as ``auto``)."""
    word = (value or "").strip().lower()
    for meaning, words in WARMUP_WORDS.items():
        if word in words:
            return meaning
    raise ValueError(f"{ENV_PREFIX}WARMUP must be one of 0/1/auto (or never/always), got "
                     f"{quote(value)}")


def _check_foreign(env_file: str | Path | None) -> None:
    """The variables other parts read from the environment, checked with the rest."""
    try:
        warmup_mode(os.environ.get(ENV_PREFIX + "WARMUP"))
    except ValueError as exc:
        raise SettingsError(f"settings: {exc}", variable=ENV_PREFIX + "WARMUP") from None
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        for key in dotenv_values(env_file):
            if key.upper() == ENV_PREFIX + "WARMUP":  # read from the environment only
                raise SettingsError(f"settings: {key} (in {env_file}): set it in the "
                                    "environment; the .env is not read for it",
                                    variable=key.upper())


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build :class:`Settings` from env, ``env_file`` and ``overrides`` (highest priority).

    Raises :class:`SettingsError` with one message naming the variable at fault.
    """
    _check_env_file(env_file)
    _reject_unknown(env_file, overrides)
    _check_foreign(env_file)
    try:
        if _nothing_to_read(env_file):
            return Settings(**overrides)
        # Validated by the subclass; handed back as a Settings (one type, equal by value).
        return Settings.model_construct(**dict(_env_settings()(_env_file=env_file, **overrides)))
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0]
        loc = tuple(first["loc"])
        var = _variable(loc)
        if first["type"] == "extra_forbidden":
            msg = "unknown setting (see .env.example)"
        elif first["type"] == "missing":
            msg = "required"
        else:
            secret = loc and loc[0] in ("http_token", "notify_urls")
            shown = "'**********'" if secret else quote(first.get("input"))
            msg = f"{first['msg'].removeprefix('Value error, ')} (got {shown})"
        more = f" [+{len(errs) - 1} more problem(s)]" if len(errs) > 1 else ""
        raise SettingsError(f"settings: {var}: {msg}{more}", variable=var) from None

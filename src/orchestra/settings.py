"""Configuration: one typed object, loaded once from options, then ORCHESTRA_* variables, then
defaults, and validated loudly."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestra.domain.controls import MAX_RETENTION_DAYS
from orchestra.errors import InvalidInput
from orchestra.notify_settings import NotifySettings, load_notify
from orchestra.oidc_settings import LOCAL_LOGIN_ALL, OVERRIDES, OidcSettings, load_oidc

ROLES = ("all", "api", "master")


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8080
    role: str = "all"
    # The URL workers and jobs use to reach this instance (ORCHESTRA_URL in a step's environment).
    public_url: str = ""
    # Seconds a run may stay pending before it is cancelled.
    pending_expiry: float = 86400.0
    # Days a final run is kept when its job sets no retention of its own (None: forever), and
    # seconds between the master's retention sweeps.
    run_retention_days: float | None = None
    retention_interval: float = 600.0
    # Seconds a worker may stay away before its runs end `exception` (a job may say otherwise).
    lease: float = 600.0
    # How often workers heartbeat, and how often masters vouch for their workers in the database.
    heartbeat_interval: float = 5.0
    # Seconds between SIGTERM and SIGKILL when a run is aborted.
    abort_grace: float = 10.0
    # PostgreSQL LISTEN/NOTIFY between processes (off: polling alone, for comparison).
    listen_notify: bool = True
    # The largest request body the API accepts.
    max_body_bytes: int = 10 * 1024 * 1024
    # New worker identifiers take no run until an administrator approves them.
    require_worker_approval: bool = False
    # The instance key(s) from ORCHESTRA_SECRET_KEY (base64, comma-separated, the first current),
    # else the key file (default: <data_dir>/secret.key): services/keyring.py.
    secret_key: str = field(default="", repr=False)
    secret_key_file: Path | None = None
    # Single sign-on (None: off) and who may log in with a password (all, administrators).
    oidc: OidcSettings | None = None
    local_login: str = LOCAL_LOGIN_ALL
    # The reverse proxies (addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto are
    # believed; none by default: a client's address is its connection's.
    trusted_proxies: tuple[str, ...] = ()
    # Seconds a client has to send a request's headers (from its connection, or its request's
    # first byte), and to start its next request on a kept-alive connection; connections open at
    # once (workers' included) past which requests are answered 503.
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 10_000
    # Notifications out: private targets, timeouts, retries, SMTP (notify_settings.py).
    notify: NotifySettings = field(default_factory=NotifySettings)
    # Where artifacts are kept (docs/artifacts.md): file:///PATH (default: <data_dir>/artifacts)
    # or s3://BUCKET/PREFIX with the endpoint of an S3-compatible store (empty: AWS's), and the
    # largest file and the most bytes of one run's files.
    artifacts_url: str = ""
    s3_endpoint_url: str = ""
    artifact_max_file_bytes: int = 4096 << 20
    artifact_max_run_bytes: int = 10240 << 20
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'orchestra.sqlite').resolve()}"

    @property
    def runs_master(self) -> bool:
        return self.role in ("all", "master")

    @property
    def serves_api(self) -> bool:
        return self.role in ("all", "api")


def _float(
    environ: Mapping[str, str],
    name: str,
    default: float | None,
    unit: str = "seconds",
    maximum: float = math.inf,
) -> float | None:
    """A positive, finite number of `unit` (at most `maximum`) from the environment, or
    `default` when the variable is unset or empty."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of {unit}, got {raw!r}") from None
    if not 0 < value <= maximum or not math.isfinite(value):
        limit = f", at most {maximum:g}" if math.isfinite(maximum) else ""
        raise InvalidInput(f"{name} must be a positive number of {unit}{limit}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _float(environ, name, default)
    assert value is not None
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {raw!r}")


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"{name} must be a positive whole number, got {raw!r}")
    return int(raw)


def trusted_proxies(raw: str, name: str = "ORCHESTRA_TRUSTED_PROXIES") -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (10.0.0.0/8); `*` (everyone) is refused."""
    found: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise InvalidInput(
                f"{name}: {item!r} is not an IP address or network (10.0.0.5, 10.0.0.0/8, ::1)"
            ) from None
    return tuple(found)


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from command-line `overrides` (None values ignored), then the environment."""
    env = os.environ if environ is None else environ
    settings = Settings(
        database_url=env.get("ORCHESTRA_DATABASE_URL", ""),
        data_dir=Path(env.get("ORCHESTRA_DATA_DIR", "var")),
        public_url=env.get("ORCHESTRA_PUBLIC_URL", ""),
        pending_expiry=_seconds(env, "ORCHESTRA_PENDING_EXPIRY", Settings.pending_expiry),
        run_retention_days=_float(
            env, "ORCHESTRA_RUN_RETENTION_DAYS", None, "days", MAX_RETENTION_DAYS
        ),
        retention_interval=_seconds(
            env, "ORCHESTRA_RETENTION_INTERVAL", Settings.retention_interval
        ),
        lease=_seconds(env, "ORCHESTRA_LEASE", Settings.lease),
        heartbeat_interval=_seconds(env, "ORCHESTRA_HEARTBEAT", Settings.heartbeat_interval),
        abort_grace=_seconds(env, "ORCHESTRA_ABORT_GRACE", Settings.abort_grace),
        listen_notify=_bool(env, "ORCHESTRA_LISTEN_NOTIFY", Settings.listen_notify),
        require_worker_approval=_bool(env, "ORCHESTRA_REQUIRE_WORKER_APPROVAL", False),
        secret_key=env.get("ORCHESTRA_SECRET_KEY", ""),
        secret_key_file=Path(env["ORCHESTRA_SECRET_KEY_FILE"])
        if env.get("ORCHESTRA_SECRET_KEY_FILE")
        else None,
        trusted_proxies=trusted_proxies(env.get("ORCHESTRA_TRUSTED_PROXIES", "")),
        header_timeout=_seconds(env, "ORCHESTRA_HEADER_TIMEOUT", Settings.header_timeout),
        keep_alive_timeout=_seconds(
            env, "ORCHESTRA_KEEP_ALIVE_TIMEOUT", Settings.keep_alive_timeout
        ),
        max_connections=_count(env, "ORCHESTRA_MAX_CONNECTIONS", Settings.max_connections),
        notify=load_notify(env),
        artifacts_url=env.get("ORCHESTRA_ARTIFACTS_URL", ""),
        s3_endpoint_url=env.get("ORCHESTRA_S3_ENDPOINT_URL", ""),
        artifact_max_file_bytes=_count(
            env, "ORCHESTRA_ARTIFACT_MAX_FILE_MB", Settings.artifact_max_file_bytes >> 20
        )
        << 20,
        artifact_max_run_bytes=_count(
            env, "ORCHESTRA_ARTIFACT_MAX_RUN_MB", Settings.artifact_max_run_bytes >> 20
        )
        << 20,
    )
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(given.get("trusted_proxies"), str):
        given["trusted_proxies"] = trusted_proxies(given["trusted_proxies"], "--trusted-proxies")
    oidc, local_login = load_oidc(env, {k: given.pop(k) for k in OVERRIDES if k in given})
    given.setdefault("oidc", oidc)
    given.setdefault("local_login", local_login)
    for name in ("data_dir", "secret_key_file"):
        if name in given:
            given[name] = Path(given[name])
    settings = replace(settings, **given)
    if settings.role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if not 0 <= settings.port <= 65535:
        raise InvalidInput("port must be between 0 and 65535")
    return settings

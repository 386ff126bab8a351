"""Gateway configuration: one YAML file validated by pydantic, overridable from the environment.

Environment variables win over the file: SWITCHYARD_STORE_URL, SWITCHYARD_ADMIN_KEY,
SWITCHYARD_DEFAULT_ROUTER, and nested fields with `__` (SWITCHYARD_TIMEOUTS__READ=30).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from experts.spec import ExpertSpec


class ConfigError(ValueError):
    pass


class RouterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    kind: str = "carrot"
    artifact: Path
    cost_weight: float = Field(default=0.0, ge=0.0, le=1.0, description="used when a request sets none")
    params: dict[str, Any] = Field(default_factory=dict)
    aggregate: Literal["synthesize", "vote", "best"] = Field(default="synthesize", description="how k > 1 answers combine, when a request says not")
    aggregator: str | None = Field(
        default=None, description="expert that synthesises; absent: the router's own choice (skills), else the top-ranked expert"
    )


class EmbeddingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "all-MiniLM-L6-v2"
    device: str = "cpu"
    truncate: str = "tail"
    cache_size: int = Field(default=100_000, ge=0)
    batch_window_ms: float = Field(default=2.0, ge=0)
    max_batch: int = Field(default=64, ge=1)
    shared_cache: bool = Field(default=True, description="with a Redis store, replicas share query embeddings through it")
    shared_ttl_s: float = Field(default=86_400.0, gt=0, description="how long a shared embedding lives in Redis")


class GroupingConfig(BaseModel):
    """Online grouping: route the requests of a short window as one batch (gateway/batching.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    window_ms: float = Field(default=2.0, ge=0, description="how long the first request of a batch waits for others")
    max_batch: int = Field(default=64, ge=1, description="a batch this full is routed at once")
    adaptive: bool = Field(default=True, description="a request that arrives while no other request is on its way to "
                           "routing is routed at once instead of waiting out the window for company that is not coming")


class TimeoutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connect: float = Field(default=5.0, gt=0)
    read: float = Field(default=120.0, gt=0, description="longest silence between two upstream bytes")
    write: float = Field(default=30.0, gt=0)
    pool: float = Field(default=10.0, gt=0)


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    access: bool = Field(default=True, description="one log line per request (id, key, router, expert, tokens, cost)")
    prompts: bool = Field(default=False, description="put the routed query text in that line (off: prompts never reach the logs)")


class RetryConfig(BaseModel):
    """Retries of one expert before its first byte (connect errors, 502/503), never after."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=3, ge=1, le=10, description="tries per expert, the first included")
    backoff_s: float = Field(default=0.05, ge=0, description="first wait; doubles each retry, with full jitter")
    max_backoff_s: float = Field(default=1.0, ge=0)


class FallbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_experts: int = Field(default=3, ge=1, description="experts tried per request, the chosen one included")


class BreakerConfig(BaseModel):
    """Per expert: `failures` in a row open it for `cooldown_s`; then one probe request decides."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=10.0, gt=0)
    refresh_s: float = Field(default=0.5, gt=0, description="how often a replica re-reads the shared state")


class HealthConfig(BaseModel):
    """Background probes of each expert server's GET /health (vLLM's); 404/405 count as healthy."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    unhealthy_after: int = Field(default=2, ge=1, description="failed probes in a row that take an expert out")
    healthy_after: int = Field(default=1, ge=1, description="passed probes in a row that put it back")


class ShutdownConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drain_timeout_s: float = Field(default=30.0, ge=0, description="after SIGTERM, how long in-flight requests may finish")


class DefenceConfig(BaseModel):
    """The prefix-gadget defence (routers/defence.py PrefixDefence): off unless `enabled`.

    On, a request of at least `min_words` words costs one more embedding (its core: the text
    without its opening); one whose opening alone buys a more expensive expert is routed on the
    core and says so in `routing.defence`. The expert still receives the request unchanged."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    params: dict[str, float] = Field(default_factory=dict, description="PrefixDefence thresholds, e.g. max_similarity")

    @model_validator(mode="after")
    def _check(self) -> DefenceConfig:
        from routers.defence import PrefixDefence  # noqa: PLC0415

        try:
            PrefixDefence(**self.params)
        except TypeError as exc:
            raise ValueError(f"unknown PrefixDefence parameter: {exc}") from None
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_", env_nested_delimiter="__", extra="forbid")

    store_url: str | None = Field(default=None, description="redis://host:port/db; absent: in-process memory")
    admin_key: SecretStr | None = None
    api_keys: list[SecretStr] = Field(default_factory=list, description="client keys; empty: no client auth")
    embedding: EmbeddingConfig = EmbeddingConfig()
    routers: list[RouterConfig] = Field(default_factory=list)
    default_router: str | None = None
    experts: list[ExpertSpec] = Field(default_factory=list)
    timeouts: TimeoutConfig = TimeoutConfig()
    grouping: GroupingConfig = GroupingConfig()
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    keep_alive_s: int = Field(default=75, ge=1, description="how long an idle client connection stays open. Keep it above the "
                              "load balancer's idle timeout (AWS ALB: 60 s), or the gateway closes connections the balancer is "
                              "about to reuse; uvicorn's 5 s default also races clients on a stalled, overloaded event loop")
    registry_refresh_s: float = Field(default=1.0, gt=0)
    rate_limit_window_s: float = Field(default=60.0, gt=0, description="the window keys' rpm/tpm count over (60: per minute)")
    logging: LogConfig = LogConfig()
    retries: RetryConfig = RetryConfig()
    fallback: FallbackConfig = FallbackConfig()
    breaker: BreakerConfig = BreakerConfig()
    health: HealthConfig = HealthConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    store_retry_s: float = Field(default=1.0, gt=0, description="while Redis is down, how often to try it again")


    defence: DefenceConfig = DefenceConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment overrides the YAML file

    @model_validator(mode="after")
    def _check(self) -> Settings:
        names = [r.name for r in self.routers]
        if len(set(names)) != len(names):
            raise ValueError("router names must be unique")
        experts = [e.name for e in self.experts]
        if len(set(experts)) != len(experts):
            raise ValueError("expert names must be unique")
        if clash := set(names) & set(experts):
            raise ValueError(f"names used by both a router and an expert: {sorted(clash)}")
        if self.default_router is None and self.routers:
            self.default_router = self.routers[0].name
        if self.default_router is not None and self.default_router not in names:
            raise ValueError(f"default_router {self.default_router!r} is not a configured router")
        return self


def load_settings(path: str | Path | None) -> Settings:
    """Read the YAML file (relative artifact paths resolve against its folder)."""
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        base = path.resolve().parent
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path or 'settings'}: {where}: {first['msg']}") from None
    for r in settings.routers:
        if not r.artifact.is_absolute():
            r.artifact = base / r.artifact
    return settings

"""Settings from the environment (DESIGN.md section 3), checked once at start."""

from __future__ import annotations

import keyword
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.paths import DEFAULT_DATA_DIR
from runtime.secret_env import read_secret
from workers.validation import DEFAULT_ALLOWED, DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from infra.local.sandbox import Limits


class SettingsError(ValueError):
    """A missing or wrong setting: the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    home: Path
    data_dir: Path
    backend: str = "local"
    # one adapter per port (DESIGN.md section 3), so a team can mix: "local", or where the
    # cloud one lives (gs://bucket/prefix, https://<db>.firebaseio.com, bigquery://p/dataset)
    artifacts: str = "local"  # TRADEOPS_ARTIFACTS: agent code, charts
    registry: str = "local"  # TRADEOPS_REGISTRY: agents, versions, runs
    fmel: str = "local"  # TRADEOPS_FMEL: decision records
    runner: str = "local"  # TRADEOPS_RUNNER: where backtests run (local | cloudbuild)
    cluster: str = "local"  # TRADEOPS_CLUSTER: where paper sessions run (local | kubernetes)
    gcp_project: str | None = None  # GOOGLE_CLOUD_PROJECT
    redis_url: str | None = None  # REDIS_URL; None: the embedded Redis under home
    # top-level module names an agent may import: the approved ones plus TRADEOPS_ALLOWED_IMPORTS
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED
    max_agent_bytes: int = DEFAULT_MAX_BYTES
    # sandbox limits (TRADEOPS_SANDBOX_*): 0 keeps the built-in default
    sandbox_memory_mb: int = 0
    sandbox_cpu_seconds: int = 0
    sandbox_processes: int = 0
    sandbox_file_mb: int = 0
    sandbox_log_bytes: int = 0
    sandbox_output_mb: int = 0
    # how often a busy worker says it is alive; a job whose worker is silent for about
    # four of these is declared lost (TRADEOPS_WORKER_HEARTBEAT_S)
    worker_heartbeat_s: float = 5.0
    # Slack (DESIGN.md section 3); secrets are kept out of repr() so they never reach a log
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    admins: frozenset[str] = frozenset()
    traders: frozenset[str] = frozenset()
    delivery_retry_s: float = 10.0  # a Slack post that failed is tried again after this long
    # how often a paper session's /health is asked; three misses in a row restart it
    paper_health_s: float = 10.0
    # scheduled digests (TRADEOPS_DIGESTS): (Slack channel id, "HH:MM" in UTC) pairs
    digests: tuple[tuple[str, str], ...] = ()
    # backtests on Cloud Build (TRADEOPS_RUNNER=cloudbuild): the prebuilt runtime image, and
    # the region whose builds run them (None: Cloud Build's global pool)
    runtime_image: str | None = None
    cloudbuild_region: str | None = None

    def sandbox_limits(self, *, timeout_s: float) -> Limits:
        from infra.local.sandbox import Limits

        chosen = {
            "memory_mb": self.sandbox_memory_mb,
            "cpu_seconds": self.sandbox_cpu_seconds,
            "processes": self.sandbox_processes,
            "file_mb": self.sandbox_file_mb,
            "log_bytes": self.sandbox_log_bytes,
            "output_mb": self.sandbox_output_mb,
        }
        return Limits(timeout_s=timeout_s, **{k: v for k, v in chosen.items() if v})

    def require(self, *names: str) -> None:
        """Fail with one line naming the first of these settings that is missing."""
        for name in names:
            if not getattr(self, name):
                raise SettingsError(f"{name.upper()} is not set (see the README's Slack section)")

    @property
    def fmel_dir(self) -> Path:
        return self.home / "fmel"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("TRADEOPS_HOME") or ".tradeops").expanduser().resolve()
        data_dir = Path(env.get("TRADEOPS_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
        if not data_dir.is_dir():
            raise SettingsError(f"TRADEOPS_DATA_DIR: {data_dir} is not a folder")
        backend = env.get("TRADEOPS_BACKEND") or "local"
        if backend not in ("local", "gcp"):
            raise SettingsError(f"TRADEOPS_BACKEND: expected 'local' or 'gcp', got {backend!r}")
        artifacts, registry, fmel, runner, cluster = _ports(env, backend)
        image, region = _cloudbuild(env, runner, artifacts, cluster)
        if home.exists() and not home.is_dir():
            raise SettingsError(f"TRADEOPS_HOME: {home} exists and is not a folder")
        return cls(
            home=home,
            data_dir=data_dir.resolve(),
            backend=backend,
            artifacts=artifacts,
            registry=registry,
            fmel=fmel,
            runner=runner,
            cluster=cluster,
            gcp_project=env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None,
            redis_url=_redis_url(env),
            allowed_imports=DEFAULT_ALLOWED | _module_names(env),
            max_agent_bytes=_max_agent_bytes(env),
            worker_heartbeat_s=_seconds(env, "TRADEOPS_WORKER_HEARTBEAT_S", 5.0),
            slack_bot_token=_token(env, "SLACK_BOT_TOKEN", "xoxb-"),
            slack_signing_secret=_secret(env, "SLACK_SIGNING_SECRET") or None,
            slack_app_token=_token(env, "SLACK_APP_TOKEN", "xapp-"),
            slack_api_url=_api_url(env),
            admins=_user_ids(env, "TRADEOPS_ADMINS"),
            traders=_user_ids(env, "TRADEOPS_TRADERS"),
            delivery_retry_s=_seconds(env, "TRADEOPS_DELIVERY_RETRY_S", 10.0),
            paper_health_s=_seconds(env, "TRADEOPS_PAPER_HEALTH_S", 10.0),
            digests=_digests(env),
            runtime_image=image,
            cloudbuild_region=region,
            **{field: _positive_int(env, var) for field, var in _SANDBOX_VARS.items()},
        )


# each port's setting: the forms it takes besides "local"
_PORT_FORMS: dict[str, tuple[str, re.Pattern[str], str]] = {
    "artifacts": ("TRADEOPS_ARTIFACTS", re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s]*)?"),
                  "gs://BUCKET[/PREFIX]"),
    "registry": ("TRADEOPS_REGISTRY", re.compile(r"https?://[A-Za-z0-9.:_-]+/?"),
                 "https://DATABASE.firebaseio.com"),
    "fmel": ("TRADEOPS_FMEL", re.compile(r"bigquery://[a-z][a-z0-9-]{4,61}[a-z0-9]/[A-Za-z_]\w{0,1023}"),
             "bigquery://PROJECT/DATASET"),
    "runner": ("TRADEOPS_RUNNER", re.compile(r"cloudbuild"), "cloudbuild"),
    "cluster": ("TRADEOPS_CLUSTER", re.compile(r"kubernetes"), "kubernetes"),
}  # fmt: skip


def _ports(env: dict[str, str], backend: str) -> tuple[str, str, str, str, str]:
    """Each port's adapter: its own setting, else what ``TRADEOPS_BACKEND=gcp`` fills in
    from ``GOOGLE_CLOUD_PROJECT`` (code and charts, the registry, decisions), else local."""
    chosen: list[str] = []
    project = env.get("GOOGLE_CLOUD_PROJECT", "").strip()
    if backend == "gcp" and not project:
        raise SettingsError("GOOGLE_CLOUD_PROJECT: TRADEOPS_BACKEND=gcp needs the project id")
    cloud = {
        "artifacts": f"gs://{project}-tradeops",
        "registry": f"https://{project}-default-rtdb.firebaseio.com",
        "fmel": f"bigquery://{project}/fmel",
    }
    for port, (var, form, example) in _PORT_FORMS.items():
        value = env.get(var, "").strip() or (cloud.get(port, "") if backend == "gcp" else "")
        if value and value != "local" and not form.fullmatch(value):
            raise SettingsError(f"{var}: expected 'local' or {example}, got {value!r}")
        chosen.append(value or "local")
    artifacts, registry, fmel, runner, cluster = chosen
    return artifacts, registry, fmel, runner, cluster


_IMAGE = re.compile(
    r"[a-z0-9][a-z0-9.-]*(:[0-9]+)?(/[a-z0-9._-]+)+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})"
)
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]")


def _cloudbuild(
    env: dict[str, str], runner: str, artifacts: str, cluster: str = "local"
) -> tuple[str | None, str | None]:
    """The runtime image (pinned by tag or digest), needed by Cloud Build and by the
    Kubernetes cluster, and Cloud Build's settings: a region, a bucket for the runs' files."""
    image = env.get("TRADEOPS_RUNTIME_IMAGE", "").strip() or None
    region = env.get("TRADEOPS_CLOUDBUILD_REGION", "").strip() or None
    if image is not None and not _IMAGE.fullmatch(image):
        raise SettingsError(
            "TRADEOPS_RUNTIME_IMAGE: expected an image with a tag or digest like "
            f"REGION-docker.pkg.dev/PROJECT/tradeops/runtime:1.0, got {image!r}"
        )
    if region is not None and not _REGION.fullmatch(region):
        raise SettingsError(
            f"TRADEOPS_CLOUDBUILD_REGION: expected a region like europe-west1, got {region!r}"
        )
    if cluster == "kubernetes" and image is None:
        raise SettingsError(
            "TRADEOPS_RUNTIME_IMAGE: TRADEOPS_CLUSTER=kubernetes needs the runtime image "
            "(built from infra/deploy/runtime.Dockerfile; see the README)"
        )
    if runner == "cloudbuild":
        if not env.get("GOOGLE_CLOUD_PROJECT", "").strip():
            raise SettingsError("GOOGLE_CLOUD_PROJECT: TRADEOPS_RUNNER=cloudbuild needs it")
        if image is None:
            raise SettingsError(
                "TRADEOPS_RUNTIME_IMAGE: TRADEOPS_RUNNER=cloudbuild needs the runtime image "
                "(built from infra/deploy/runtime.Dockerfile; see the README)"
            )
        if not artifacts.startswith("gs://"):
            raise SettingsError(
                "TRADEOPS_ARTIFACTS: TRADEOPS_RUNNER=cloudbuild needs a bucket (gs://BUCKET) for "
                "the agents and the runs' files"
            )
    return image, region


def _module_names(env: dict[str, str]) -> frozenset[str]:
    """TRADEOPS_ALLOWED_IMPORTS: comma-separated top-level module names, added to the defaults."""
    names = [n.strip() for n in env.get("TRADEOPS_ALLOWED_IMPORTS", "").split(",")]
    bad = [n for n in names if n and (not n.isidentifier() or keyword.iskeyword(n))]
    if bad:
        raise SettingsError(
            f"TRADEOPS_ALLOWED_IMPORTS: {bad[0]!r} is not a top-level module name "
            "(expected names like scipy,talib)"
        )
    return frozenset(n for n in names if n)


_SANDBOX_VARS = {
    "sandbox_memory_mb": "TRADEOPS_SANDBOX_MEMORY_MB",
    "sandbox_cpu_seconds": "TRADEOPS_SANDBOX_CPU_SECONDS",
    "sandbox_processes": "TRADEOPS_SANDBOX_PROCESSES",
    "sandbox_file_mb": "TRADEOPS_SANDBOX_FILE_MB",
    "sandbox_log_bytes": "TRADEOPS_SANDBOX_LOG_BYTES",
    "sandbox_output_mb": "TRADEOPS_SANDBOX_OUTPUT_MB",
}


def _redis_url(env: dict[str, str]) -> str | None:
    url = env.get("REDIS_URL", "").strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"REDIS_URL: expected redis://, rediss:// or unix://, got {url!r}")
    return url or None


def _positive_int(env: dict[str, str], var: str) -> int:
    """An optional positive integer setting; 0 when unset."""
    text = env.get(var, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) <= 0:
        raise SettingsError(f"{var}: expected a positive whole number, got {text!r}")
    return int(text)


def _secret(env: dict[str, str], var: str) -> str:
    """A secret given directly (``VAR``) or as a file (``VAR_FILE``: a mounted Secret)."""
    try:
        return read_secret(env, var) or ""
    except ValueError as exc:
        said = str(exc)
        raise SettingsError(said if said.startswith(var) else f"{var}: {said}") from None


def _token(env: dict[str, str], var: str, prefix: str) -> str | None:
    text = _secret(env, var)
    if text and not text.startswith(prefix):
        raise SettingsError(f"{var}: expected a token starting with {prefix} (value not shown)")
    return text or None


def _api_url(env: dict[str, str]) -> str:
    url = env.get("SLACK_API_URL", "").strip() or "https://slack.com/api/"
    if not url.startswith(("https://", "http://")):
        raise SettingsError(f"SLACK_API_URL: expected an http(s):// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def _user_ids(env: dict[str, str], var: str) -> frozenset[str]:
    ids = [u.strip() for u in env.get(var, "").split(",") if u.strip()]
    bad = [u for u in ids if not u.replace("_", "").isalnum()]
    if bad:
        raise SettingsError(f"{var}: expected Slack user ids like U012AB3CD, got {bad[0]!r}")
    return frozenset(ids)


def _seconds(env: dict[str, str], var: str, default: float) -> float:
    text = env.get(var, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise SettingsError(f"{var}: expected a number of seconds like 5 or 0.5, got {text!r}")
    return value


_CHANNEL_ID = re.compile(r"[A-Z][A-Z0-9]{1,31}")
_UTC_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _digests(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """TRADEOPS_DIGESTS: ``C0123ABCD@09:00,C0456@17:30``, a channel id and a UTC time each.

    UTC, not the machine's zone, so the schedule means the same on every host; channel
    ids, not names, because names change and the Web API posts to ids.
    """
    found: dict[tuple[str, str], None] = {}
    for entry in (e.strip() for e in env.get("TRADEOPS_DIGESTS", "").split(",")):
        if not entry:
            continue
        channel, at, hhmm = entry.partition("@")
        if not (at and _CHANNEL_ID.fullmatch(channel) and _UTC_TIME.fullmatch(hhmm)):
            raise SettingsError(
                f"TRADEOPS_DIGESTS: {entry!r} is not CHANNEL@HH:MM "
                "(a Slack channel id and a 24-hour UTC time, like C0123ABCD@09:00)"
            )
        found[channel, hhmm] = None
    return tuple(found)


def _max_agent_bytes(env: dict[str, str]) -> int:
    text = env.get("TRADEOPS_MAX_AGENT_BYTES") or str(DEFAULT_MAX_BYTES)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(
            f"TRADEOPS_MAX_AGENT_BYTES: expected a positive number of bytes, got {text!r}"
        )
    return value

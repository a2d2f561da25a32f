"""The composition root: the one place that reads settings and picks adapters."""

from __future__ import annotations

from typing import Any

from infra.settings import Settings, SettingsError
from runtime.defaults import DEFAULT_TIMEOUT_S
from workers.jobs import Services
from workers.ports import Notifier


def build_services(settings: Settings, notifier: Notifier) -> Services:
    if settings.backend != "local":
        raise SettingsError(
            f"TRADEOPS_BACKEND: the {settings.backend!r} adapters are not built yet; use 'local'"
        )
    from infra.local.artifacts import LocalArtifactStore
    from infra.local.fmel import LocalFmelStore
    from infra.local.market import LocalMarketData
    from infra.local.paper import LocalPaperCluster
    from infra.local.registry import SqliteRegistry
    from infra.local.runner import SubprocessRunner
    from workers.validation import Policy

    limits = settings.sandbox_limits(timeout_s=DEFAULT_TIMEOUT_S)
    artifacts = LocalArtifactStore(settings.home / "artifacts")
    fmel = LocalFmelStore(settings.fmel_dir)
    market = LocalMarketData(settings.data_dir)
    return Services(
        artifacts=artifacts,
        registry=SqliteRegistry(settings.home / "state.db"),
        fmel=fmel,
        runner=SubprocessRunner(
            limits=limits,
            fmel=fmel,
            market=market,
            warm_dir=settings.home / "warm",  # the worker keeps a sandbox ready between jobs
        ),
        notifier=notifier,
        market=market,
        runs_dir=settings.runs_dir,
        policy=Policy(max_bytes=settings.max_agent_bytes, allowed_imports=settings.allowed_imports),
        meta_sink=_job_meta,
        cluster=LocalPaperCluster(
            settings.home,
            data_dir=settings.data_dir,
            fmel_dir=settings.fmel_dir,
            artifacts=artifacts,
            limits=limits,
        ),
    )


def _job_meta(meta: dict[str, Any]) -> None:
    """Progress (bars done / total) into the running RQ job's meta, for whoever polls it."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.meta.update(meta)
        job.save_meta()

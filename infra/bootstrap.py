"""The composition root: the one place that reads settings and picks adapters.

``bootstrap(settings)`` gives a :class:`Platform`: each port's adapter, made on first use
from its own setting (``TRADEOPS_ARTIFACTS``, ``TRADEOPS_REGISTRY``, ``TRADEOPS_FMEL``,
``TRADEOPS_RUNNER``, ``TRADEOPS_CLUSTER``; DESIGN.md section 3), or the one passed as an
override. A process pays only for the adapters it uses: ``tradeops runs`` opens the
registry and nothing else, a worker makes its sandbox runner, the bot never does.

Front-ends (``bot/``) and jobs (``workers/``) see ports only; processes are started from
here too (:meth:`Platform.run_worker`, :meth:`Platform.run_scheduler`), so nothing outside
``infra/`` names an adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from infra.settings import Settings, SettingsError
from runtime.defaults import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    import redis

    from workers.jobs import Services
    from workers.ports import (
        ArtifactStore,
        BacktestRunner,
        EventLog,
        FmelStore,
        FmelStream,
        MarketData,
        Notifier,
        PaperCluster,
        Registry,
        WorkQueue,
    )

class Platform:
    """Every port of one deployment, each adapter made once, on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        artifacts: ArtifactStore | None = None,
        registry: Registry | None = None,
        fmel: FmelStore | None = None,
        market: MarketData | None = None,
        runner: BacktestRunner | None = None,
        cluster: PaperCluster | None = None,
        events: EventLog | None = None,
        queue: WorkQueue | None = None,
        redis_conn: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        given = {"artifacts": artifacts, "registry": registry, "fmel": fmel, "market": market,
                 "runner": runner, "cluster": cluster, "events": events, "queue": queue,
                 "redis": redis_conn}  # fmt: skip
        # a cached_property reads the instance dict first: an override is simply there
        self.__dict__.update({k: v for k, v in given.items() if v is not None})

    # ------------------------------------------------------------------ storage
    @cached_property
    def artifacts(self) -> ArtifactStore:
        where = self.settings.artifacts
        if where.startswith("gs://"):  # Cloud Storage: gs://BUCKET[/PREFIX]
            from infra.gcp.clients import storage_client
            from infra.gcp.storage import GcsArtifactStore

            bucket, _, prefix = where.removeprefix("gs://").partition("/")
            client = storage_client(self.settings.gcp_project)
            return GcsArtifactStore(client, bucket, prefix.strip("/"))
        from infra.local.artifacts import LocalArtifactStore

        return LocalArtifactStore(self.settings.home / "artifacts")

    @cached_property
    def registry(self) -> Registry:
        where = self.settings.registry
        if where.startswith(("https://", "http://")):  # Firebase Realtime Database
            from infra.gcp.clients import firebase_root
            from infra.gcp.firebase import FirebaseRegistry

            return FirebaseRegistry(firebase_root(where, self.settings.gcp_project))
        from infra.local.registry import SqliteRegistry

        return SqliteRegistry(self.settings.home / "state.db")

    @cached_property
    def fmel(self) -> FmelStore:
        where = self.settings.fmel
        if where.startswith("bigquery://"):  # bigquery://PROJECT/DATASET
            from infra.gcp.bigquery import BigQueryFmelStore
            from infra.gcp.clients import bigquery_client

            project, _, dataset = where.removeprefix("bigquery://").partition("/")
            return BigQueryFmelStore(bigquery_client(project), dataset)
        from infra.local.fmel import LocalFmelStore

        return LocalFmelStore(self.settings.fmel_dir)

    def registry_rules(self, *, apply: bool = False) -> tuple[dict[str, Any], bool]:
        """The Realtime Database rules the registry's queries need: (the rules, changed?);
        with ``apply``, merged into the database's own (read and written back)."""
        where = self.settings.registry
        if not where.startswith(("https://", "http://")):
            raise SettingsError(
                "TRADEOPS_REGISTRY: the local registry needs no rules; set it to the Firebase "
                "Realtime Database (https://DATABASE.firebaseio.com)"
            )
        from infra.gcp import firebase

        if not apply:
            return firebase.index_rules(), False
        from infra.gcp.clients import firebase_rules_endpoint

        session, rules_url = firebase_rules_endpoint(where)
        return firebase.apply_index_rules(session, rules_url)

    @cached_property
    def market(self) -> MarketData:
        from infra.local.market import LocalMarketData

        return LocalMarketData(self.settings.data_dir)

    # ------------------------------------------------------------------ compute
    @cached_property
    def runner(self) -> BacktestRunner:
        if self.settings.runner == "cloudbuild":
            return self._cloudbuild_runner()
        from infra.local.runner import SubprocessRunner

        return SubprocessRunner(
            limits=self.settings.sandbox_limits(timeout_s=DEFAULT_TIMEOUT_S),
            artifacts=self.artifacts,
            fmel=self.fmel,
            market=self.market,
            runs_dir=self.settings.runs_dir,
            warm_dir=self.settings.home / "warm",  # a worker keeps a sandbox ready between jobs
        )

    def _cloudbuild_runner(self) -> BacktestRunner:
        """Backtests as Cloud Build builds of the runtime image; the artifact store's
        bucket holds each run's files and the builds' logs (settings checked at start)."""
        from infra.gcp.clients import cloudbuild_client
        from infra.gcp.cloudbuild import CloudBuildRunner

        settings = self.settings
        assert settings.gcp_project and settings.runtime_image  # Settings.from_env checked
        return CloudBuildRunner(
            client=cloudbuild_client,  # made at the first run
            project=settings.gcp_project,
            artifacts=self.artifacts,
            image=settings.runtime_image,
            region=settings.cloudbuild_region,
            runs_dir=settings.runs_dir,
            market=self.market,
            fmel=self.fmel,
            limits=settings.sandbox_limits(timeout_s=DEFAULT_TIMEOUT_S),
        )

    def sandbox_runner(
        self, *, timeout_s: float, unsafe: bool = False, data_dir: Path | None = None
    ) -> LocalRun:
        """A runner on this machine for one command: its own timeout, its own data folder,
        unsandboxed only when asked and no sandbox can be had (``SettingsError``, one line,
        when there is none and it was not asked). Close it with ``close()``."""
        from infra.local.market import LocalMarketData
        from infra.local.runner import LOG_FILE, SubprocessRunner
        from infra.local.sandbox import Sandbox, SandboxUnavailable

        limits = self.settings.sandbox_limits(timeout_s=timeout_s)
        try:
            sandbox = Sandbox.detect(limits, allow_unsafe=unsafe)
        except SandboxUnavailable as exc:
            raise SettingsError(str(exc)) from None
        runner = SubprocessRunner(
            sandbox=sandbox,
            timeout_s=timeout_s,
            log_limit=limits.log_bytes,
            warm_dir=self.settings.home / "warm",
            keep_warm=False,
            artifacts=self.artifacts,
            fmel=self.fmel,
            market=LocalMarketData(data_dir) if data_dir is not None else self.market,
            runs_dir=self.settings.runs_dir,
        )
        runner.prewarm()  # the sandbox starts while the command validates and loads data
        return LocalRun(
            runner=runner,
            market=runner.market or self.market,
            unsandboxed=sandbox.isolation == "none",
            log_of=lambda run_id: self.settings.runs_dir / run_id / LOG_FILE,
            close=runner.close,
        )

    @cached_property
    def cluster(self) -> PaperCluster:
        if self.settings.cluster == "kubernetes":  # StatefulSets of the runtime image
            from infra.k8s.client import api_client
            from infra.k8s.paper import KubernetesPaperCluster

            assert self.settings.runtime_image  # Settings.from_env checked
            stream = self.fmel if hasattr(self.fmel, "ingest_rows") else None
            return KubernetesPaperCluster(
                api_client(),
                image=self.settings.runtime_image,
                artifacts=self.artifacts,
                records=self.redis,  # stopped sessions, what the watcher saw and shipped
                fmel=cast("FmelStream | None", stream),  # BigQuery: decisions pulled in
            )
        from infra.local.paper import LocalPaperCluster

        return LocalPaperCluster(
            self.settings.home,
            data_dir=self.settings.data_dir,
            fmel_dir=self.settings.fmel_dir,
            artifacts=self.artifacts,
            limits=self.settings.sandbox_limits(timeout_s=DEFAULT_TIMEOUT_S),
            health_every_s=self.settings.paper_health_s,
            news_env=self._settings_env(),
            ship_fmel=self.settings.fmel != "local",
        )

    def paper_manifest(self, spec: Any) -> dict[str, Any]:
        """The StatefulSet the Kubernetes cluster would apply for ``spec`` (nothing is
        applied; the agent's code from the artifact store)."""
        from infra.k8s.paper import statefulset

        image = self.settings.runtime_image or "REGION-docker.pkg.dev/PROJECT/tradeops/runtime:TAG"
        return statefulset(spec, image=image, code=self.artifacts.get(spec.sha256))

    def _settings_env(self) -> dict[str, str]:
        """What a process this one starts needs to reach the same queue, event log and FMEL
        store (credentials and emulator hosts come with the environment it inherits)."""
        env = {"TRADEOPS_HOME": str(self.settings.home), "TRADEOPS_FMEL": self.settings.fmel}
        if self.settings.redis_url:
            env["REDIS_URL"] = self.settings.redis_url
        if self.settings.gcp_project:
            env["GOOGLE_CLOUD_PROJECT"] = self.settings.gcp_project
        return env

    # ------------------------------------------------------------------ queue and events
    @cached_property
    def redis(self) -> redis.Redis:
        """The Redis behind the queue and the event log (``REDIS_URL``, else this home's
        embedded one, started if it is not running)."""
        from infra.local.queue import connect

        return connect(self.settings)

    @cached_property
    def events(self) -> EventLog:
        from infra.local.events import RedisEventLog

        return RedisEventLog(self.redis)

    @cached_property
    def queue(self) -> WorkQueue:
        from infra.local.queue import RedisWorkQueue

        return RedisWorkQueue(self.settings, lambda: self.redis, lambda: self.services())

    def queue_url(self) -> str:
        """Where the queue is, for a status line (starts the embedded Redis if need be)."""
        from infra.local.queue import redis_url

        return redis_url(self.settings)

    # ------------------------------------------------------------------ jobs
    def services(self, notifier: Notifier | None = None, **changes: Any) -> Services:
        """What job functions take: these adapters, events to ``notifier`` (by default the
        event log), with ``changes`` (another runner, a shorter progress interval…)."""
        from workers.jobs import Services
        from workers.validation import Policy

        settings = self.settings
        services = Services(
            artifacts=self.artifacts,
            registry=self.registry,
            fmel=self.fmel,
            runner=self.runner,
            notifier=notifier if notifier is not None else self.events,
            market=self.market,
            policy=Policy(
                max_bytes=settings.max_agent_bytes, allowed_imports=settings.allowed_imports
            ),
            meta_sink=_job_meta,
            cluster=self.cluster,
            queue=self.queue,
        )
        return replace(services, **changes) if changes else services

    def serve_health(self, port: int | None, process: str) -> None:
        """``GET /health`` on ``port`` (a pod's probes): ok while the queue's Redis answers."""
        if not port:
            return
        from infra.health import serve_health

        def check() -> dict[str, Any]:
            reachable = self.queue.reachable()
            return {"status": "ok" if reachable else "unhealthy", "process": process,
                    "redis": reachable}  # fmt: skip

        serve_health(port, check)

    def run_worker(self, queues: tuple[str, ...], *, burst: bool = False) -> int:
        """A worker on ``queues`` in this process until stopped (or, with ``burst``, until
        they are empty). Jobs run in this process, so the sandbox it warms between jobs is
        still there for the next one (a forking worker would lose it with each job)."""
        import sys

        from rq import Queue

        from infra.local.worker import Worker

        conn = self.redis
        worker = Worker(
            [Queue(q, connection=conn) for q in queues],
            connection=conn,
            services=self.services(),
            heartbeat_s=self.settings.worker_heartbeat_s,
        )
        print(f"tradeops worker: queues {', '.join(queues)} on {self.queue_url()}",
              file=sys.stderr)  # fmt: skip
        if "backtest" in queues and not burst:
            _import_while_idle("workers.sweep_chart")  # a sweep's collector draws with it
        try:
            worker.work(burst=burst, logging_level="WARNING")
        finally:
            if "runner" in self.__dict__:
                close = getattr(self.runner, "close", None)
                if close is not None:
                    close()  # the sandbox kept warm for a next job
        return 0

    def run_scheduler(self) -> int:
        """Scheduled digests until stopped; with the Kubernetes cluster, also the watcher
        that turns paper pods' restarts into crash news."""
        from infra.local.scheduler import run_scheduler

        if self.settings.cluster == "kubernetes":
            self._watch_paper_pods()
        return run_scheduler(self.settings)

    def _watch_paper_pods(self, every_s: float = 15.0) -> None:
        import logging
        import threading

        cluster = self.cluster
        watch, ship = getattr(cluster, "watch", None), getattr(cluster, "ship", None)
        if watch is None:
            return
        stream = getattr(cluster, "fmel", None)

        def loop() -> None:
            while True:
                try:
                    watch(self.events)
                    if ship is not None and stream is not None:
                        ship(stream)  # the sessions' new decisions into the FMEL store
                except Exception as exc:  # the API away for a while: the next look
                    logging.getLogger(__name__).warning("paper pod watch: %s", exc)
                threading.Event().wait(every_s)

        threading.Thread(target=loop, name="paper-watch", daemon=True).start()

    def embedded_redis(self, *, stop: bool = False) -> str:
        """What this home's embedded Redis is doing (stopping it first with ``stop``)."""
        from infra.local.redis_server import EmbeddedRedis

        home = self.settings.home
        if self.settings.redis_url:
            raise SettingsError("REDIS_URL is set: that Redis is not tradeops' to stop")
        server = EmbeddedRedis(home)
        pid = server.pid() if server.running() else None
        if stop and pid is not None:
            server.stop()
            return f"stopped the embedded Redis of {home} (pid {pid})"
        if pid is not None:
            return f"the embedded Redis of {home} runs (pid {pid}, {server.url})"
        return f"no embedded Redis runs for {home}"

    def stop_idle_redis(self) -> None:
        """Stop the embedded Redis (one a command started), unless another process uses it."""
        from infra.local.redis_server import EmbeddedRedis

        if "redis" in self.__dict__:
            self.redis.connection_pool.disconnect()
        if self.settings.redis_url:
            return
        srv = EmbeddedRedis(self.settings.home)
        try:
            clients = len(srv.client(retries=0).client_list())
        except Exception:
            return
        if clients <= 1:
            srv.stop()


@dataclass(frozen=True)
class LocalRun:
    """A backtest runner for one command on this machine, and what the command shows."""

    runner: BacktestRunner
    market: MarketData
    unsandboxed: bool  # --unsafe where no sandbox could be had: the command warns
    log_of: Callable[[str], Path]  # a run's agent log on this machine
    close: Callable[[], None]


def bootstrap(settings: Settings, **overrides: Any) -> Platform:
    """The platform of ``settings``, with any port given in ``overrides`` used as is."""
    return Platform(settings, **overrides)


def _import_while_idle(module: str) -> None:
    """Import ``module`` on a thread now, while the worker waits for its first job, so the
    job that needs it (matplotlib: half a second) does not pay for it at the end of a sweep."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True,
                     name="import-" + module).start()  # fmt: skip


def _job_meta(meta: dict[str, Any]) -> None:
    """Progress (bars done / total) into the running RQ job's meta, for whoever polls it."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.meta.update(meta)
        job.save_meta()

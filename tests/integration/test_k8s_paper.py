"""KubernetesPaperCluster with the official client against our Kubernetes API stand-in, which
runs each StatefulSet's pod as a sandboxed `python -m runtime paper` (the runtime image's
ENTRYPOINT) with restarts, probes and the hardening it demands:

start → StatefulSet → pod → /health (through the API server's proxy) → the pod's container
killed and restarted with the chain continued (crash news from the watcher) → stop (scaled
to zero, then deleted, the volume kept) → a later start of the same run resumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client

from infra.k8s.paper import NAMESPACE, KubernetesPaperCluster
from infra.local.artifacts import LocalArtifactStore
from infra.local.queue import connect
from infra.settings import Settings
from tests.bq_server import bq_server_fixture  # noqa: F401
from tests.conftest import SMA_CROSS
from tests.fakes import InMemoryEventLog
from tests.kube_server import KubeApiServer, eventually, kube_server_fixture  # noqa: F401
from workers.ports import NotFound, PaperConflict, PaperSpec, SessionStatus

IMAGE = "europe-docker.pkg.dev/tradeops-test/tradeops/runtime:test"


@pytest.fixture
def records(redis_home: Path) -> Iterator[redis.Redis]:
    conn = connect(Settings(home=redis_home, data_dir=redis_home))
    yield conn
    conn.close()


@pytest.fixture
def cluster(
    kube_server: KubeApiServer, records: redis.Redis, tmp_path: Path
) -> Iterator[KubernetesPaperCluster]:
    api = kube_server.client()
    made = KubernetesPaperCluster(api, image=IMAGE, artifacts=LocalArtifactStore(tmp_path / "a"),
                                  records=records, stop_wait_s=60)  # fmt: skip
    yield made
    for session in made.status():
        if session.status is not SessionStatus.STOPPED:
            made.stop(session.agent)
    api.close()


def spec_for(cluster: KubernetesPaperCluster, agent: str, run_id: str) -> PaperSpec:
    sha = cluster.artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    return PaperSpec(agent=agent, version=1, sha256=sha, owner="U1", run_id=run_id,
                     symbols=("SPY",), cash=5000.0, bar_seconds=0.05,
                     reply_to={"channel": "C1", "thread_ts": "1.2"})  # fmt: skip


def running(cluster: KubernetesPaperCluster, agent: str, at_least: int = 1) -> Any:
    def check() -> Any:
        [session] = cluster.status(agent)
        health = session.health or {}
        return session.status is SessionStatus.RUNNING and health.get("decisions", 0) >= at_least \
            and session
    return eventually(check, timeout=90, what=f"paper-{agent} running with decisions")


@pytest.mark.slow
def test_a_session_lives_restarts_resumes_and_stops_as_a_statefulset(
    cluster: KubernetesPaperCluster, kube_server: KubeApiServer
) -> None:
    agent, run_id = f"k{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:8]}"
    spec = spec_for(cluster, agent, run_id)
    started = cluster.start(spec)
    assert started.status in (SessionStatus.STARTING, SessionStatus.RUNNING)
    assert (started.agent, started.owner, started.run_id) == (agent, "U1", run_id)
    assert started.parameters["symbols"] == ["SPY"] and started.pid is None

    first = running(cluster, agent, at_least=5)
    assert first.health["mode"] == "PAPER_TRADE" and first.health["run_id"] == run_id
    eventually(lambda: "BUY" in cluster.logs(agent, tail=200), timeout=60, what="its log")
    with pytest.raises(PaperConflict):
        cluster.start(spec)

    news = InMemoryEventLog()
    assert cluster.watch(news) == 0  # nothing has happened yet
    kube_server.kill(NAMESPACE, f"paper-{agent}-0")  # the container dies; the pod stays
    eventually(lambda: cluster.status(agent)[0].restarts == 1, timeout=60, what="a restart")
    resumed = running(cluster, agent, at_least=first.health["decisions"] + 1)
    assert resumed.health["resumed_from_bar"]  # its volume kept the chain: it went on
    assert cluster.watch(news) == 1 and cluster.watch(news) == 0  # once per restart
    [event] = news.events(f"paper-{agent}-{run_id}")
    assert event.health["status"] == "crashed" and event.health["restarts"] == 1
    assert event.reply_to == {"channel": "C1", "thread_ts": "1.2"}  # the owner's thread

    stopped = cluster.stop(agent)
    assert stopped.status is SessionStatus.STOPPED and stopped.stopped_at is not None
    assert stopped.final and stopped.final["decisions"] >= resumed.health["decisions"]
    apps, core = client.AppsV1Api(kube_server.client()), client.CoreV1Api(kube_server.client())
    with pytest.raises(client.ApiException) as gone:
        apps.read_namespaced_stateful_set(f"paper-{agent}", NAMESPACE)
    assert gone.value.status == 404  # scaled to zero, then deleted
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"tradeops.dev/agent={agent}")
    assert not pods.items
    claims = core.list_namespaced_persistent_volume_claim(NAMESPACE).items
    assert f"session-paper-{agent}-0" in {c.metadata.name for c in claims}  # the volume kept
    [kept] = cluster.status(agent)
    assert kept.status is SessionStatus.STOPPED and kept.run_id == run_id
    assert cluster.stop(agent).status is SessionStatus.STOPPED  # twice: unchanged

    again = cluster.start(spec)  # the same run again: it resumes from its volume
    assert again.run_id == run_id
    back = running(cluster, agent)
    assert back.health["resumed_from_bar"] >= stopped.final["decisions"] - 1


def test_an_unknown_agent(cluster: KubernetesPaperCluster) -> None:
    assert cluster.status("ghost") == []
    with pytest.raises(NotFound):
        cluster.stop("ghost")
    with pytest.raises(NotFound):
        cluster.logs("ghost")


@pytest.mark.slow
def test_a_pods_decisions_reach_bigquery_checked_and_whole(
    kube_server: KubeApiServer, records: redis.Redis, tmp_path: Path, bq_server: Any
) -> None:
    """The pod holds no store credentials: its rows are taken from its /fmel through the API
    server's proxy, checked, and appended to BigQuery while it runs; at the stop, its last
    rows and its summary, so the run verifies from BigQuery."""
    from infra.gcp.bigquery import BigQueryFmelStore
    from tests.bq_server import new_dataset

    bq = bq_server.client()
    fmel = BigQueryFmelStore(bq, new_dataset(), timeout_s=20)
    api = kube_server.client()
    cluster = KubernetesPaperCluster(api, image=IMAGE, records=records, fmel=fmel,
                                     artifacts=LocalArtifactStore(tmp_path / "a"))  # fmt: skip
    agent, run_id = f"q{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:8]}"
    try:
        cluster.start(spec_for(cluster, agent, run_id))
        running(cluster, agent, at_least=20)
        # what the scheduler's loop does every 15 s: rows arrive once the pod has flushed some
        eventually(lambda: cluster.ship(fmel) or fmel.decisions(run_id, last=1), timeout=60,
                   what="rows in BigQuery")  # fmt: skip
        taken = fmel.decisions(run_id)
        assert taken and taken[0]["bar_number"] == 1 and taken[0]["mode"] == "PAPER"
        stopped = cluster.stop(agent)
        assert stopped.final is not None
        check = fmel.verify(run_id)
        assert check.ok and check.reason is None, check  # the summary came with the last rows
        assert check.rows >= stopped.final["decisions"] >= len(taken)
    finally:
        if cluster.status(agent) and cluster.status(agent)[0].status is not SessionStatus.STOPPED:
            cluster.stop(agent)
        api.close()
        bq.close()


@pytest.mark.slow
def test_the_paper_jobs_run_on_kubernetes(
    kube_server: KubeApiServer, records: redis.Redis, redis_home: Path
) -> None:
    """The same jobs the chat commands queue (`/paper-start`, `/paper-status`,
    `/paper-stop`), on the Kubernetes cluster: the job layer needs nothing local."""
    from infra.bootstrap import bootstrap
    from runtime.paths import DEFAULT_DATA_DIR
    from workers import control
    from workers import events as ev

    api = kube_server.client()
    settings = Settings(home=redis_home, data_dir=DEFAULT_DATA_DIR)
    platform = bootstrap(settings, redis_conn=records)
    cluster = KubernetesPaperCluster(api, image=IMAGE, records=records,
                                     artifacts=platform.artifacts)  # fmt: skip
    s = platform.services(notifier=InMemoryEventLog(), cluster=cluster)
    agent = f"j{uuid.uuid4().hex[:6]}"
    sha = s.artifacts.put(SMA_CROSS.read_bytes(), kind="agent")
    s.registry.add_version(owner="U1", name=agent, sha256=sha, report={})
    try:
        fast = {"symbols": ["SPY"], "bar_seconds": 0.05}
        started = control.paper_start(s, job_id="j1", owner="U1", agent=agent, parameters=fast)
        assert isinstance(started, ev.PaperStarted), started
        running(cluster, agent, at_least=3)
        status = control.paper_status(s, job_id="j2", owner="U1", agent=agent)
        assert isinstance(status, ev.PaperStatus)
        assert status.sessions[0]["status"] == "running" and status.sessions[0]["restarts"] == 0
        stopped = control.paper_stop(s, job_id="j3", owner="U1", agent=agent)
        assert isinstance(stopped, ev.PaperStopped), stopped
        assert stopped.summary["status"] == "stopped"
        run = s.registry.get_run(started.session["run_id"])
        assert run is not None and run.status.value == "finished"
    finally:
        if cluster.status(agent) and cluster.status(agent)[0].status is not SessionStatus.STOPPED:
            cluster.stop(agent)
        api.close()

"""infra/deploy/k8s and the paper StatefulSet, checked by tools nobody here wrote: Kubernetes'
own schemas (kubernetes-validate, offline) and checkov (no failed check; each skip says why
in its file); KEDA's scaling rule held to what it means."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.k8s.paper import statefulset
from infra.k8s.scaling import desired_workers
from tests.conftest import REPO_ROOT
from workers.ports import QUEUES, PaperSpec

K8S = REPO_ROOT / "infra" / "deploy" / "k8s"
CHECKOV = REPO_ROOT / ".venv" / "opt" / "checkov" / "bin" / "checkov"
VERSION = "1.30.0"  # GKE's oldest supported minor here
NOT_CORE = {"Kustomization", "ScaledObject"}  # not Kubernetes' own kinds: checked below


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def paper_statefulset(feed: str = "alpaca") -> dict[str, Any]:
    spec = PaperSpec(agent="sma", version=3, sha256="0" * 64, owner="U1", run_id="p-1",
                     symbols=("SPY", "QQQ"), cash=5000.0, feed=feed)  # type: ignore[arg-type]  # fmt: skip
    return statefulset(spec, image="europe-docker.pkg.dev/p/tradeops/runtime:0.1.0",
                       code=b"import backtrader\n")  # fmt: skip


def _id(x: Any) -> str:
    return x if isinstance(x, str) else str(x.get("kind", ""))


@pytest.mark.parametrize(("name", "doc"), documents(), ids=_id)
def test_every_manifest_validates_against_kubernetes_schemas(
    name: str, doc: dict[str, Any]
) -> None:
    if doc["kind"] in NOT_CORE:
        return
    kubernetes_validate.validate(doc, VERSION, strict=True)


@pytest.mark.parametrize("feed", ["replay", "alpaca"])
def test_the_paper_statefulset_validates_and_is_hardened(feed: str) -> None:
    doc = paper_statefulset(feed)
    kubernetes_validate.validate(doc, VERSION, strict=True)
    pod = doc["spec"]["template"]["spec"]
    [container] = pod["containers"]
    context = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "4Gi"}}  # the seed's
    env = {e["name"]: e for e in container["env"]}
    assert env["MODE"]["value"] == "PAPER_TRADE" and doc["spec"]["replicas"] == 1
    assert not any("valueFrom" in e for e in env.values())  # secrets only as files
    assert ("ALPACA_API_KEY_FILE" in env) is (feed == "alpaca")
    assert doc["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    """The manifests and, beside the NetworkPolicy it needs, the adapter's StatefulSet."""
    scanned = tmp_path / "k8s"
    shutil.copytree(K8S, scanned)
    (scanned / "paper-sma.yaml").write_text(yaml.safe_dump(paper_statefulset()))
    done = subprocess.run(
        [str(CHECKOV), "-d", str(scanned), "--framework", "kubernetes", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-2000:]

    report = json.loads(done.stdout)
    report = report if isinstance(report, dict) else report[0]
    results = report["results"]
    failed = [(f["check_id"], f["resource"]) for f in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 250
    for skipped in results["skipped_checks"]:  # every skip says why
        assert len(skipped["check_result"].get("suppress_comment") or "") > 30, skipped


def test_the_kustomization_lists_every_manifest() -> None:
    [kustomization] = by_kind("Kustomization")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_role_grants_the_paper_statefulsets_and_nothing_else() -> None:
    [role] = by_kind("Role")
    assert role["metadata"]["namespace"] == "trading-agents"
    granted = {(g, r): set(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert granted == {
        ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch", "delete"},
        ("apps", "statefulsets/scale"): {"get", "patch"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
        ("", "pods/proxy"): {"get"},
    }
    assert by_kind("ClusterRole") == [] and by_kind("ClusterRoleBinding") == []


def test_each_process_is_probed_where_it_serves_its_health() -> None:
    for deployment in by_kind("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        [port] = container["ports"]
        args = container["args"]
        if args[0] in ("worker", "scheduler"):
            assert args[args.index("--health-port") + 1] == str(port["containerPort"])
        else:
            assert args[:2] == ["bot", "--http"] and args[-1] == str(port["containerPort"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


# ---------------------------------------------------------------- KEDA
def scaled_object() -> dict[str, Any]:
    [found] = by_kind("ScaledObject")
    return found


def test_the_scaled_object_scales_the_worker_on_every_queue() -> None:
    found = scaled_object()
    assert found["apiVersion"] == "keda.sh/v1alpha1"
    assert found["spec"]["scaleTargetRef"]["name"] in {
        d["metadata"]["name"] for d in by_kind("Deployment")}  # fmt: skip
    lists = [t["metadata"]["listName"] for t in found["spec"]["triggers"]]
    assert sorted(lists) == sorted(f"rq:queue:{q}" for q in QUEUES)  # RQ's own list names
    for trigger in found["spec"]["triggers"]:
        assert trigger["type"] == "redis"
        assert set(trigger["metadata"]) == {"addressFromEnv", "listName", "listLength"}
        assert trigger["metadata"]["listLength"].isdigit()  # KEDA takes a string
    [config] = by_kind("ConfigMap")
    assert "REDIS_ADDRESS" in config["data"]  # what addressFromEnv names


@pytest.mark.parametrize(
    ("lengths", "workers"),
    [
        ({}, 1),  # idle: the minimum, never zero (a job must not wait for a cold start)
        ({"rq:queue:backtest": 1}, 1),
        ({"rq:queue:backtest": 7}, 4),
        ({"rq:queue:backtest": 3, "rq:queue:validate": 9}, 5),  # the busiest queue decides
        ({"rq:queue:backtest": 500}, 10),  # capped
    ],
)
def test_the_scaling_rule(lengths: dict[str, int], workers: int) -> None:
    assert desired_workers(scaled_object(), lengths) == workers

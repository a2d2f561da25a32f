"""One setting per port, and the composition root that reads them (infra/bootstrap.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.bootstrap import bootstrap
from infra.settings import SettingsError
from tests.fakes import InMemoryArtifactStore, InMemoryRegistry
from tests.unit.test_settings_slack import error, settings
from workers.ports import BacktestSpec

CLOUDBUILD = {
    "TRADEOPS_RUNNER": "cloudbuild",
    "GOOGLE_CLOUD_PROJECT": "my-project",
    "TRADEOPS_RUNTIME_IMAGE": "europe-docker.pkg.dev/my-project/tradeops/runtime:1.0",
}


def test_every_port_is_local_by_default(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.artifacts, s.registry, s.fmel, s.runner, s.cluster) == ("local",) * 5


def test_each_port_has_its_own_setting(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        TRADEOPS_ARTIFACTS="gs://team-bucket/tradeops",
        TRADEOPS_FMEL="bigquery://my-project/fmel",
        **CLOUDBUILD,
    )
    assert s.artifacts == "gs://team-bucket/tradeops"
    assert s.fmel == "bigquery://my-project/fmel"
    assert s.runner == "cloudbuild" and s.runtime_image == CLOUDBUILD["TRADEOPS_RUNTIME_IMAGE"]
    assert (s.registry, s.cluster) == ("local", "local")  # the rest stay on this machine


def test_the_gcp_backend_fills_the_storage_ports_from_the_project(tmp_path: Path) -> None:
    s = settings(tmp_path, TRADEOPS_BACKEND="gcp", GOOGLE_CLOUD_PROJECT="acme-trading",
                 TRADEOPS_FMEL="local")  # fmt: skip
    assert s.artifacts == "gs://acme-trading-tradeops"
    assert s.registry == "https://acme-trading-default-rtdb.firebaseio.com"
    assert s.fmel == "local"  # a port's own setting wins
    assert (s.runner, s.cluster) == ("local", "local")


def test_the_gcp_backend_needs_a_project(tmp_path: Path) -> None:
    assert "GOOGLE_CLOUD_PROJECT" in error(tmp_path, TRADEOPS_BACKEND="gcp")


@pytest.mark.parametrize(
    ("var", "bad"),
    [
        ("TRADEOPS_ARTIFACTS", "s3://bucket"),
        ("TRADEOPS_ARTIFACTS", "gs://"),
        ("TRADEOPS_REGISTRY", "firebase"),
        ("TRADEOPS_FMEL", "bigquery://p/x"),  # a project id has 6 to 30 characters
        ("TRADEOPS_FMEL", "bigquery://my-project/fmel; DROP"),
        ("TRADEOPS_RUNNER", "docker"),
        ("TRADEOPS_CLUSTER", "nomad"),
    ],
)
def test_a_wrong_port_setting_is_one_line_naming_it(tmp_path: Path, var: str, bad: str) -> None:
    message = error(tmp_path, **{var: bad})
    assert message.startswith(f"{var}: expected 'local' or ")
    assert repr(bad) in message


def test_the_kubernetes_cluster_needs_the_runtime_image(tmp_path: Path) -> None:
    said = error(tmp_path, TRADEOPS_CLUSTER="kubernetes")
    assert said.startswith("TRADEOPS_RUNTIME_IMAGE: TRADEOPS_CLUSTER=kubernetes needs")


@pytest.mark.parametrize(
    ("missing", "changed", "said"),
    [
        ("GOOGLE_CLOUD_PROJECT", {}, "GOOGLE_CLOUD_PROJECT: TRADEOPS_RUNNER=cloudbuild needs it"),
        ("TRADEOPS_RUNTIME_IMAGE", {}, "TRADEOPS_RUNTIME_IMAGE: TRADEOPS_RUNNER=cloudbuild needs"),
        ("TRADEOPS_ARTIFACTS", {}, "TRADEOPS_ARTIFACTS: TRADEOPS_RUNNER=cloudbuild needs a bucket"),
        ("", {"TRADEOPS_RUNTIME_IMAGE": "runtime"}, "TRADEOPS_RUNTIME_IMAGE: expected an image"),
        ("", {"TRADEOPS_RUNTIME_IMAGE": "gcr.io/p/runtime:1; rm -rf /"}, "expected an image"),
        ("", {"TRADEOPS_CLOUDBUILD_REGION": "mars"}, "TRADEOPS_CLOUDBUILD_REGION: expected"),
    ],
)
def test_cloud_build_settings_are_checked_at_start(
    tmp_path: Path, missing: str, changed: dict[str, str], said: str
) -> None:
    env = {**CLOUDBUILD, "TRADEOPS_ARTIFACTS": "gs://team-bucket", **changed}
    env.pop(missing, None)
    assert said in error(tmp_path, **env)


@pytest.mark.parametrize(
    ("var", "value", "port"),
    [
        ("TRADEOPS_ARTIFACTS", "gs://bkt", "artifacts"),
        ("TRADEOPS_REGISTRY", "https://x.firebaseio.com", "registry"),
        ("TRADEOPS_FMEL", "bigquery://my-project/fmel", "fmel"),
    ],
)
def test_a_google_port_without_credentials_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, port: str
) -> None:
    for emulator in ("STORAGE_EMULATOR_HOST", "FIREBASE_DATABASE_EMULATOR_HOST",
                     "BIGQUERY_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):  # fmt: skip
        monkeypatch.delenv(emulator, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on a Google VM: do not ask its metadata
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud login here
    platform = bootstrap(settings(tmp_path, **{var: value}))  # made on first use, not before
    with pytest.raises(SettingsError, match=r"^GOOGLE_APPLICATION_CREDENTIALS: no Google cred"):
        getattr(platform, port)


def test_an_override_stands_in_for_the_setting(tmp_path: Path) -> None:
    store = InMemoryArtifactStore()
    platform = bootstrap(settings(tmp_path, TRADEOPS_CLUSTER="kubernetes",
                                  TRADEOPS_RUNTIME_IMAGE=CLOUDBUILD["TRADEOPS_RUNTIME_IMAGE"]),
                         artifacts=store, cluster=object())  # type: ignore[arg-type]  # fmt: skip
    assert platform.artifacts is store


def test_adapters_are_made_on_first_use_and_once(tmp_path: Path) -> None:
    platform = bootstrap(settings(tmp_path))
    assert "registry" not in vars(platform)  # nothing made yet, no file written
    assert not (tmp_path / "home" / "state.db").exists()
    assert platform.registry is platform.registry
    assert (tmp_path / "home" / "state.db").exists()
    assert "runner" not in vars(platform) and "redis" not in vars(platform)


def test_job_services_use_the_platforms_ports(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    platform = bootstrap(settings(tmp_path), registry=registry)
    sent: list[object] = []

    class Notes:
        def send(self, event: object) -> None:
            sent.append(event)

    services = platform.services(Notes(), progress_every_s=0.5)  # no event log, no Redis
    assert services.registry is registry and services.artifacts is platform.artifacts
    assert services.progress_every_s == 0.5
    assert "redis" not in vars(platform) and not (tmp_path / "home" / "redis").exists()


SHA = "a" * 64


@pytest.mark.parametrize(
    ("field", "bad"),
    [("run_id", "../x"), ("run_id", ""), ("agent", "a/b"), ("agent", "1abc"),
     ("agent_sha256", "zz")],
)  # fmt: skip
def test_a_backtest_spec_refuses_names_no_runner_may_build_paths_from(
    field: str, bad: str
) -> None:
    good = {"run_id": "20261202T120000-abcd1234", "agent": "sma", "agent_sha256": SHA}
    BacktestSpec(version=1, owner="U1", symbols=("SPY",), **good)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BacktestSpec(version=1, owner="U1", symbols=("SPY",), **{**good, field: bad})  # type: ignore[arg-type]

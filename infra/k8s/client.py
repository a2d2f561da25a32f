"""The Kubernetes API client: the pod's service account in the cluster, else the kubeconfig;
``KUBERNETES_API_URL`` (ours, like the Google emulator variables) points it at a stand-in."""

from __future__ import annotations

import os
from typing import Any

from infra.settings import SettingsError


def api_client() -> Any:
    from kubernetes import client, config

    url = os.environ.get("KUBERNETES_API_URL", "").strip()
    if url:
        configuration = client.Configuration()
        configuration.host = url
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as exc:
            raise SettingsError(
                "TRADEOPS_CLUSTER: kubernetes needs the cluster's credentials: run in a pod "
                f"with its service account, or have a kubeconfig ({exc})"
            ) from None
    return client.ApiClient()

"""What the workers' KEDA ScaledObject (infra/deploy/k8s/keda.yaml) asks Kubernetes for.

KEDA's redis scaler reports each list's length as an external metric with an average-value
target of ``listLength``; the HPA wants ``ceil(length / listLength)`` replicas for each, takes
the largest, and keeps it within ``minReplicaCount``..``maxReplicaCount``. Written out here so
the tests can hold the manifest to what we mean by it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def desired_workers(scaled_object: Mapping[str, Any], lengths: Mapping[str, int]) -> int:
    """Workers wanted for the RQ lists' ``lengths`` (by list name, e.g. ``rq:queue:backtest``)."""
    spec = scaled_object["spec"]
    wanted = 0
    for trigger in spec["triggers"]:
        if trigger["type"] != "redis":
            raise ValueError(f"unexpected trigger {trigger['type']!r}")
        meta = trigger["metadata"]
        per_worker = int(meta["listLength"])
        wanted = max(wanted, math.ceil(lengths.get(meta["listName"], 0) / per_worker))
    low, high = int(spec.get("minReplicaCount", 0)), int(spec.get("maxReplicaCount", 100))
    return max(low, min(high, wanted))

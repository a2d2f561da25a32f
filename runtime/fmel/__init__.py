"""FMEL: the Foundation Model Explainability Layer, one hash-chained record per bar."""

from runtime.fmel.recorder import FMELRecorder, new_run_id

__all__ = ["FMELRecorder", "new_run_id"]

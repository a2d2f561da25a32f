"""Kubernetes adapters: the paper cluster on StatefulSets."""

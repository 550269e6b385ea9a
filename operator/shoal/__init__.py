"""Shoal: a Kubernetes operator for pools of pods, training sessions and metric-driven autoscaling."""

__version__ = "0.1.0"
GROUP = "shoal.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

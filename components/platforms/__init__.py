"""Platforms turn target-neutral service specs into Docker or Kubernetes resources."""

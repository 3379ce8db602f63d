"""Thin Prefect tasks: retries, cross-process caching, MLflow logging. The library works."""

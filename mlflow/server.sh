#!/usr/bin/env bash
# Shared MLflow tracking server over the project's store, bound to 127.0.0.1 (security
# middleware stays on). Usage: mlflow/server.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mlflow server \
  --backend-store-uri "sqlite:///$PWD/mlflow/mlflow.db" \
  --artifacts-destination "$PWD/mlflow/artifacts" \
  --host 127.0.0.1 --port "${1:-5000}"

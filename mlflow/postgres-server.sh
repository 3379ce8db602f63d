#!/usr/bin/env bash
# MLflow tracking server on its own PostgreSQL 15 cluster, everything under one folder.
#
#   mlflow/postgres-server.sh start  DIR [MLFLOW_PORT]   # prints the tracking URI last
#   mlflow/postgres-server.sh status DIR                 # exit 0 when both answer
#   mlflow/postgres-server.sh stop   DIR
#
# What lands in DIR:
#   pgdata/          the cluster (initdb), listening on 127.0.0.1 only (no Unix socket)
#   password         the generated database password, mode 0600 (never printed or logged)
#   pgpass           the same password in libpq's PGPASSFILE format, mode 0600: MLflow's
#                    backend URI carries no password (it would show in `ps` and in logs)
#   artifacts/       the artifact root, served by MLflow (--artifacts-destination)
#   server.env       ports and pids of the running servers (no secret)
#   postgres.log, mlflow-server.log
#
# Needs the PostgreSQL server binaries (pg_ctl on PATH, PG_BINDIR, or Debian's
# /usr/lib/postgresql/<version>/bin), and `mlflow` (MLFLOW=..., default: the repo's
# .venv/bin/mlflow, else the one on PATH) from an environment with a PostgreSQL driver
# (psycopg[binary], in pyproject). PostgreSQL refuses to run as root: as root, the cluster
# is owned and run by PG_USER (default: postgres), so DIR must be reachable by that user.
# The MLflow security middleware stays on; both servers bind 127.0.0.1.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DB_USER=mlflow
DB_NAME=mlflow

die() { echo "postgres-server.sh: $*" >&2; exit 1; }

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 2 ] || usage
ACTION="$1"
DIR="$2"
REQUESTED_PORT="${3:-}"

if [ -z "${MLFLOW:-}" ]; then
  if [ -x "$REPO/.venv/bin/mlflow" ]; then MLFLOW="$REPO/.venv/bin/mlflow"; else MLFLOW="$(command -v mlflow || true)"; fi
fi
PY="$(dirname "${MLFLOW:-/nonexistent}")/python"
if [ -z "${PG_BINDIR:-}" ]; then
  PG_CTL_PATH="$(command -v pg_ctl || true)"
  if [ -n "$PG_CTL_PATH" ]; then
    PG_BINDIR="$(dirname "$(readlink -f "$PG_CTL_PATH")")"
  else  # Debian/Ubuntu keep the server binaries off PATH, one folder per major version
    PG_BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  fi
fi
[ -x "${PG_BINDIR:-}/pg_ctl" ] || die "PostgreSQL server binaries (pg_ctl, initdb) not found: install PostgreSQL 15 or set PG_BINDIR"

# As root, every server-side PostgreSQL command runs as the unprivileged cluster owner.
if [ "$(id -u)" = 0 ]; then
  PG_USER="${PG_USER:-postgres}"
  id "$PG_USER" >/dev/null 2>&1 || die "as root, the cluster needs an unprivileged owner: user $PG_USER does not exist (set PG_USER)"
  as_owner() { runuser -u "$PG_USER" -- "$@"; }
else
  PG_USER="$(id -un)"
  as_owner() { "$@"; }
fi

pg() { as_owner "$PG_BINDIR/$1" "${@:2}"; }

load_state() {
  PG_PORT="" MLFLOW_PORT="" MLFLOW_PID=""
  # shellcheck disable=SC1091
  [ -f "$DIR/server.env" ] && . "$DIR/server.env"
  return 0
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mlflow_alive() { [ -n "${MLFLOW_PID:-}" ] && kill -0 "$MLFLOW_PID" 2>/dev/null; }

healthy() {
  "$PY" -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status == 200 else 1)
except OSError:
    sys.exit(1)' "http://127.0.0.1:$1/health" 2>/dev/null
}

init_cluster() {
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then
    chown "$PG_USER" "$DIR"   # a folder dedicated to this server: the cluster owner writes pgdata/ in it
    as_owner test -x "$DIR" || die "$DIR is not reachable by user $PG_USER (a parent folder is private); use a folder it can traverse, e.g. under /tmp or /srv"
  fi
  (
    umask 077
    "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$DIR/password"
    printf '127.0.0.1:*:*:%s:%s\n' "$DB_USER" "$(cat "$DIR/password")" > "$DIR/pgpass"
  )
  chmod 600 "$DIR/password" "$DIR/pgpass"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$DIR/password"
  pg initdb -D "$DIR/pgdata" -U "$DB_USER" --pwfile="$DIR/password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  # Loopback TCP only: no Unix socket (no shared socket folder needed), password auth.
  as_owner sh -c "cat >> '$DIR/pgdata/postgresql.conf'" <<'EOF'

# paretoflow mlflow/postgres-server.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
EOF
  as_owner sh -c "printf 'host all all 127.0.0.1/32 scram-sha-256\n' > '$DIR/pgdata/pg_hba.conf'"
}

start_postgres() {
  PG_PORT="$(free_port)"
  pg pg_ctl -D "$DIR/pgdata" -l "$DIR/postgres.log" -o "-p $PG_PORT" -w -t 120 start >/dev/null \
    || { tail -20 "$DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
  export PGPASSFILE="$DIR/pgpass"
  if ! "$PG_BINDIR/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" "$DB_NAME"
  fi
}

start_mlflow() {
  MLFLOW_PORT="${REQUESTED_PORT:-$(free_port)}"
  mkdir -p "$DIR/artifacts"
  # setsid: MLflow and its workers form one process group, stopped together.
  PGPASSFILE="$DIR/pgpass" setsid "$MLFLOW" server \
    --backend-store-uri "postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME" \
    --artifacts-destination "$DIR/artifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    >"$DIR/mlflow-server.log" 2>&1 < /dev/null &
  MLFLOW_PID=$!
  printf 'PG_PORT=%s\nMLFLOW_PORT=%s\nMLFLOW_PID=%s\n' "$PG_PORT" "$MLFLOW_PORT" "$MLFLOW_PID" > "$DIR/server.env"
  for _ in $(seq 1 "${MLFLOW_START_TIMEOUT:-240}"); do
    healthy "$MLFLOW_PORT" && return 0
    mlflow_alive || break
    sleep 1
  done
  tail -30 "$DIR/mlflow-server.log" >&2
  return 1
}

stop_all() {
  load_state
  if mlflow_alive; then
    kill -TERM -- "-$MLFLOW_PID" 2>/dev/null || kill -TERM "$MLFLOW_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do mlflow_alive || break; sleep 1; done
    mlflow_alive && { kill -KILL -- "-$MLFLOW_PID" 2>/dev/null || kill -KILL "$MLFLOW_PID" 2>/dev/null || true; }
  fi
  if [ -f "$DIR/pgdata/postmaster.pid" ]; then
    pg pg_ctl -D "$DIR/pgdata" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  rm -f "$DIR/server.env"
}

case "$ACTION" in
  start)
    [ -n "${MLFLOW:-}" ] && [ -x "$MLFLOW" ] || die "mlflow not found: set MLFLOW=/path/to/mlflow"
    load_state
    if mlflow_alive && healthy "${MLFLOW_PORT:-0}"; then echo "http://127.0.0.1:$MLFLOW_PORT"; exit 0; fi
    stop_all
    [ -d "$DIR/pgdata" ] || init_cluster
    trap 'stop_all' ERR
    start_postgres
    start_mlflow || { stop_all; die "mlflow server did not answer /health (log: $DIR/mlflow-server.log)"; }
    trap - ERR
    echo "http://127.0.0.1:$MLFLOW_PORT"
    ;;
  stop)
    stop_all
    ;;
  status)
    load_state
    pg_state=down; mlflow_state=down
    [ -f "$DIR/pgdata/postmaster.pid" ] && pg pg_ctl -D "$DIR/pgdata" status >/dev/null 2>&1 && pg_state="up (127.0.0.1:$PG_PORT)"
    mlflow_alive && healthy "${MLFLOW_PORT:-0}" && mlflow_state="up (http://127.0.0.1:$MLFLOW_PORT)"
    echo "postgresql: $pg_state"
    echo "mlflow:     $mlflow_state"
    [ "$pg_state" != down ] && [ "$mlflow_state" != down ]
    ;;
  *)
    usage
    ;;
esac

#!/usr/bin/env bash
# Cluster demo: a built-in problem evolved on a two-node Ray cluster on loopback, stored in
# PostgreSQL. Starts a PostgreSQL server (python -m evoforge.testing.postgres: Debian's package,
# a fresh data dir owned by an unprivileged user, a loopback port) and two Ray nodes (`ray start`
# through python -m evoforge.testing.ray_cluster: a head with 2 CPUs and the resource
# node_head, a worker with 2 CPUs and node_w1, in their own process groups and temp dir), runs
# the problem for a bounded budget with executor.name=ray and storage.url=postgresql://...,
# prints the evaluations per node and the throughput, and stops everything it started (trap on
# EXIT; never `ray stop`, which would stop every Ray on the machine).
#
#   bash scripts/cluster-demo.sh [PROBLEM] [MAX_PROGRAMS]      (default: circle_packing_26 60)
#
# Last line: cluster demo: N programs, per node: A / B, X programs/s
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PROBLEM=${1:-circle_packing_26}
BUDGET=${2:-60}
WORK=$(mktemp -d /tmp/cdemo-XXXXXX)  # short: Ray's unix sockets live under it
chmod 711 "$WORK"  # PostgreSQL's unprivileged server user enters it to reach its own dir
RAY_PID=""
PG_STARTED=""

cleanup() {
  if [ -n "$RAY_PID" ] && kill -0 "$RAY_PID" 2>/dev/null; then
    kill -TERM "$RAY_PID" 2>/dev/null || true  # it kills its nodes' process groups
    wait "$RAY_PID" 2>/dev/null || true
  fi
  if [ -n "$PG_STARTED" ]; then
    "$PY" -m evoforge.testing.postgres stop --dir "$WORK/pg" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_line() {  # wait_line FILE PID SECONDS: the file's first line, once its writer printed it
  local file=$1 pid=$2 end=$((SECONDS + $3))
  while [ ! -s "$file" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "cluster demo: it exited early:" >&2; return 1; fi
    if [ $SECONDS -ge $end ]; then echo "cluster demo: timed out" >&2; return 1; fi
    sleep 0.2
  done
  head -n1 "$file"
}

STORAGE=()
if "$PY" -c "import evoforge.testing.postgres" 2>/dev/null; then
  echo "cluster demo: starting PostgreSQL"
  PG_STARTED=1
  URL=$("$PY" -m evoforge.testing.postgres start --dir "$WORK/pg" | tail -n1)
  STORAGE=(--set "storage.url=$URL")
  echo "cluster demo: PostgreSQL at $URL"
else
  echo "cluster demo: this evoforge has no PostgreSQL storage yet; the run is stored in SQLite"
fi

echo "cluster demo: starting a two-node Ray cluster (head: 2 CPUs, w1: 2 CPUs)"
"$PY" -m evoforge.testing.ray_cluster start --dir "$WORK/ray" --node head:2 --node w1:2 \
  >"$WORK/ray.address" 2>"$WORK/ray.log" &
RAY_PID=$!
ADDRESS=$(wait_line "$WORK/ray.address" "$RAY_PID" 180) || { cat "$WORK/ray.log" >&2; exit 1; }
echo "cluster demo: Ray at $ADDRESS"

RUN="$WORK/run"
START=$(date +%s.%N)
"$PY" -m evoforge.cli run "$PROBLEM" --out "$RUN" -q --max-programs "$BUDGET" \
  --set executor.name=ray --set "executor.address=$ADDRESS" "${STORAGE[@]}"
END=$(date +%s.%N)
"$PY" -m evoforge.cli status "$RUN" | grep -E "^(best|evaluated per Ray node)" || true

"$PY" - "$RUN" "$START" "$END" <<'EOF'
import sys

from evoforge.api import inspect_run
from evoforge.executors.ray import evaluated_on
from evoforge.program import Status

run, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with inspect_run(run) as (_, storage):
    done = [p for p in storage.programs() if p.status is not Status.PENDING]
nodes = evaluated_on(done)
per_node = sorted(nodes.items())
counts = " / ".join(str(n) for _, n in per_node) or "0"
for node, n in per_node:
    print(f"  {node}: {n} programs evaluated")
print(f"cluster demo: {len(done)} programs, per node: {counts}, "
      f"{len(done) / (end - start):.2f} programs/s")
EOF

#!/usr/bin/env bash
# Start, use and stop a Dask cluster for crate-dask on one or several machines (ssh or by hand).
#
# Usage: pipelines/cluster/cluster.sh start | status | stop
#        pipelines/cluster/cluster.sh analyze LIBRARY OUT [more crate-dask analyze options]
#
# Settings come from the environment (or a file named by CLUSTER_ENV, sourced first):
#   SCHEDULER_HOST    the address the scheduler listens on and the workers connect to: the
#                     LAN address of the scheduler's machine, never 0.0.0.0 [127.0.0.1]
#   SCHEDULER_PORT    [8786]
#   WORKER_HOSTS      hosts that run workers, separated by spaces; "localhost" runs them
#                     here, any other name through ssh (keys, no password) [localhost]
#   WORKERS_PER_HOST  worker processes per host, one thread each (one per core) [1]
#   CERT_DIR          folder with ca.pem, node.pem, node-key.pem (make_certs.sh), at the same
#                     path on every machine: TLS with mutual certificates. Empty: plain TCP,
#                     only on a network where everyone who can connect may run code on every
#                     machine [empty]
#   PYTHON            the Python that has crate-dask installed, same path on every host [python3]
#   STATE_DIR         pid files and logs of this cluster [./crate-dask-cluster]
#   MEMORY_LIMIT      per worker process [auto]
#
# Each machine must see the library and the results folder; where they are mounted at
# other paths than on the client, pass --path-map CLIENT_PREFIX=WORKER_PREFIX to analyze.
# To start by hand instead, run on the scheduler's machine and on each worker the two
# commands that `start` prints.
set -euo pipefail
[ -n "${CLUSTER_ENV:-}" ] && . "$CLUSTER_ENV"
SCHEDULER_HOST=${SCHEDULER_HOST:-127.0.0.1}
SCHEDULER_PORT=${SCHEDULER_PORT:-8786}
WORKER_HOSTS=${WORKER_HOSTS:-localhost}
WORKERS_PER_HOST=${WORKERS_PER_HOST:-1}
CERT_DIR=${CERT_DIR:-}
PYTHON=${PYTHON:-python3}
STATE_DIR=${STATE_DIR:-./crate-dask-cluster}
MEMORY_LIMIT=${MEMORY_LIMIT:-auto}
mkdir -p "$STATE_DIR"
STATE_DIR=$(cd "$STATE_DIR" && pwd)

if [ -n "$CERT_DIR" ]; then
    PROTO=tls
    TLS=(--tls-ca-file "$CERT_DIR/ca.pem" --tls-cert "$CERT_DIR/node.pem" --tls-key "$CERT_DIR/node-key.pem")
    CLIENT_TLS=(--tls-ca-file "$CERT_DIR/ca.pem" --tls-cert "$CERT_DIR/node.pem" --tls-key "$CERT_DIR/node-key.pem")
else
    PROTO=tcp
    TLS=()
    CLIENT_TLS=()
fi
ADDRESS="$PROTO://$SCHEDULER_HOST:$SCHEDULER_PORT"

scheduler_cmd() {
    # The dashboard has no authentication: it listens on the scheduler's loopback only
    # (reach it with `ssh -L 8787:127.0.0.1:8787 SCHEDULER_HOST`).
    echo "$PYTHON" -m distributed.cli.dask_scheduler --host "$SCHEDULER_HOST" --port "$SCHEDULER_PORT" \
        --protocol "$PROTO" --dashboard-address 127.0.0.1:8787 "${TLS[@]}"
}

worker_cmd() {   # $1: the host the worker runs on (its listening address)
    local listen=$1
    [ "$listen" = localhost ] && listen=127.0.0.1
    echo "$PYTHON" -m distributed.cli.dask_worker "$ADDRESS" --host "$listen" --nworkers "$WORKERS_PER_HOST" \
        --nthreads 1 --memory-limit "$MEMORY_LIMIT" --no-dashboard "${TLS[@]}"
}

run_bg() {   # $1 host, $2 name, rest: command; records host and pid in STATE_DIR/NAME.pid
    local host=$1 name=$2; shift 2
    local log="$STATE_DIR/$name.log"
    if [ "$host" = localhost ]; then
        nohup "$@" >"$log" 2>&1 </dev/null &
        echo "localhost $!" >"$STATE_DIR/$name.pid"
    else
        local pid
        pid=$(ssh -o BatchMode=yes "$host" "mkdir -p '$STATE_DIR' && nohup $* >'$log' 2>&1 </dev/null & echo \$!")
        echo "$host $pid" >"$STATE_DIR/$name.pid"
    fi
}

wait_for_scheduler() {
    "$PYTHON" - "$ADDRESS" "${CERT_DIR:-}" "$1" <<'PYEOF'
import sys, time
from distributed import Client
from distributed.security import Security
address, certs, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sec = Security(tls_ca_file=f"{certs}/ca.pem", tls_client_cert=f"{certs}/node.pem",
               tls_client_key=f"{certs}/node-key.pem", require_encryption=True) if certs else None
t0 = time.monotonic()
while True:
    try:
        with Client(address, security=sec, timeout="5s") as c:
            c.wait_for_workers(n, timeout=max(1.0, 300 - (time.monotonic() - t0)))
            print(f"cluster at {address}: {len(c.scheduler_info()['workers'])} workers")
            break
    except (OSError, TimeoutError) as exc:
        if time.monotonic() - t0 > 300:
            sys.exit(f"the cluster at {address} did not come up: {exc}")
        time.sleep(1)
PYEOF
}

case "${1:-}" in
start)
    echo "scheduler: $(scheduler_cmd)"
    echo "workers:   $(worker_cmd HOST)"
    # shellcheck disable=SC2046
    run_bg localhost scheduler $(scheduler_cmd)
    i=0
    for host in $WORKER_HOSTS; do
        # shellcheck disable=SC2046
        run_bg "$host" "worker-$i-$host" $(worker_cmd "$host")
        i=$((i + 1))
    done
    n=0
    for _ in $WORKER_HOSTS; do n=$((n + WORKERS_PER_HOST)); done
    wait_for_scheduler "$n"
    echo "$ADDRESS" >"$STATE_DIR/address"
    ;;
status)
    for f in "$STATE_DIR"/*.pid; do
        [ -e "$f" ] || continue
        read -r host pid <"$f"
        if [ "$host" = localhost ]; then alive=$(kill -0 "$pid" 2>/dev/null && echo up || echo down)
        else alive=$(ssh -o BatchMode=yes "$host" "kill -0 $pid 2>/dev/null && echo up || echo down"); fi
        echo "$(basename "$f" .pid) on $host (pid $pid): $alive"
    done
    ;;
stop)
    # workers first (their nannies stop their processes), then the scheduler
    for f in "$STATE_DIR"/worker-*.pid "$STATE_DIR"/scheduler.pid; do
        [ -e "$f" ] || continue
        read -r host pid <"$f"
        if [ "$host" = localhost ]; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        else
            ssh -o BatchMode=yes "$host" "kill $pid" || true
        fi
        rm -f "$f"
    done
    rm -f "$STATE_DIR/address"
    echo "stopped"
    ;;
analyze)
    shift
    [ $# -ge 2 ] || { echo "usage: $0 analyze LIBRARY OUT [options]" >&2; exit 2; }
    lib=$1 out=$2; shift 2
    exec "$PYTHON" -m crate_dask.cli analyze "$lib" --out "$out" --scheduler "$ADDRESS" "${CLIENT_TLS[@]}" "$@"
    ;;
*)
    echo "usage: $0 start | status | stop | analyze LIBRARY OUT [options]" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# leadscore's production stack on one machine, brought up and down in the right order:
#
#   up      databases -> MLflow server -> Prefect server -> work pool -> deploy -> worker
#   down    worker -> Prefect server -> MLflow server (each stopped with its children)
#   status  what runs, and whether it answers
#   env     the exports that point this shell's `leadscore` and `prefect` at the stack:
#           eval "$(examples/production/stack.sh env)"
#
# PostgreSQL is assumed to be running; nothing here needs root. Every setting is a variable
# with a default that suits a PostgreSQL on this machine (docs/production-deployments.md):
#
#   LEADSCORE_STACK_DIR    state folder you own: the project file, logs, pids, MLflow's
#                          artifacts, Prefect's home   (~/.local/state/leadscore-stack)
#   LEADSCORE_DB_HOST / _PORT / _USER    the PostgreSQL server and role  (127.0.0.1, 5432, $PGUSER or you)
#   LEADSCORE_DB_NAME      the CRM's database: source tables and published scores  (leadscore)
#   LEADSCORE_MLFLOW_DB / LEADSCORE_PREFECT_DB   the servers' own databases  (mlflow, prefect)
#   LEADSCORE_MLFLOW_PORT / LEADSCORE_PREFECT_PORT                            (5000, 4200)
#   LEADSCORE_SCORE_CRON / LEADSCORE_TRAIN_CRON / LEADSCORE_TIMEZONE  ("0 2 * * *", "0 3 * * 1", UTC)
#   LEADSCORE_CONFIG       the project file to deploy  ($LEADSCORE_STACK_DIR/leadscore.yaml,
#                          copied from examples/production/leadscore.yaml on the first `up`)
#
# The database password is never written anywhere by this script: put it in PGPASSWORD or
# in ~/.pgpass (chmod 600), where PostgreSQL's own clients, the MLflow server, the Prefect
# server and leadscore all read it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECKOUT=$(cd "$HERE/../.." && pwd)
BIN=${LEADSCORE_BIN:-$CHECKOUT/.venv/bin}

STACK=${LEADSCORE_STACK_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/leadscore-stack}
export LEADSCORE_DB_HOST=${LEADSCORE_DB_HOST:-127.0.0.1}
export LEADSCORE_DB_PORT=${LEADSCORE_DB_PORT:-5432}
export LEADSCORE_DB_USER=${LEADSCORE_DB_USER:-${PGUSER:-$(id -un)}}
export LEADSCORE_DB_NAME=${LEADSCORE_DB_NAME:-leadscore}
export LEADSCORE_MLFLOW_PORT=${LEADSCORE_MLFLOW_PORT:-5000}
MLFLOW_DB=${LEADSCORE_MLFLOW_DB:-mlflow}
PREFECT_DB=${LEADSCORE_PREFECT_DB:-prefect}
PREFECT_PORT=${LEADSCORE_PREFECT_PORT:-4200}
CONFIG=${LEADSCORE_CONFIG:-$STACK/leadscore.yaml}
POOL=leadscore

DB_SERVER="$LEADSCORE_DB_USER@$LEADSCORE_DB_HOST:$LEADSCORE_DB_PORT"
MLFLOW_URL="http://127.0.0.1:$LEADSCORE_MLFLOW_PORT"
PREFECT_URL="http://127.0.0.1:$PREFECT_PORT"
# What every Prefect client (CLI, worker, the flow runs it starts) talks to.
export PREFECT_API_URL="$PREFECT_URL/api"
export PREFECT_HOME="$STACK/prefect"

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 2; }
pidfile() { printf '%s/run/%s.pid' "$STACK" "$1"; }

running() {  # running NAME: true while the process group it started lives
    local file pid
    file=$(pidfile "$1")
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    kill -0 -- "-$pid" 2>/dev/null
}

start() {  # start NAME COMMAND...: in its own process group, output to logs/NAME.log
    local name=$1
    shift
    if running "$name"; then
        say "$name already running (pid $(cat "$(pidfile "$name")"))"
        return
    fi
    # set -m: the job leads its own process group (down stops it with every child) and,
    # unlike a plain background job of a script, it keeps Ctrl-C's default handling.
    set -m
    "$@" </dev/null >>"$STACK/logs/$name.log" 2>&1 &
    echo $! >"$(pidfile "$name")"
    set +m
    say "$name started (pid $!, log $STACK/logs/$name.log)"
}

stop() {  # stop NAME: SIGTERM to its process group, SIGKILL after 30 s
    local name=$1 file pid i
    file=$(pidfile "$name")
    if ! running "$name"; then
        rm -f "$file"
        say "$name not running"
        return
    fi
    pid=$(cat "$file")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for i in $(seq 60); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
        say "$name still running after 30 s: killing it"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    say "$name stopped"
}

prefect_cli() { "$BIN/prefect" --no-prompt "$@"; }

up() {
    [ -x "$BIN/leadscore" ] || die "no leadscore in $BIN: run \`python3 run.py setup\` in $CHECKOUT first"
    umask 077
    mkdir -p "$STACK/logs" "$STACK/run" "$STACK/mlflow-artifacts" "$PREFECT_HOME"
    if [ ! -f "$CONFIG" ]; then
        [ "$CONFIG" = "$STACK/leadscore.yaml" ] || die "LEADSCORE_CONFIG names $CONFIG, which does not exist"
        cp "$HERE/leadscore.yaml" "$CONFIG"
        cp "$CHECKOUT/models/mql_rules.yaml" "$STACK/mql_rules.yaml"
        say "wrote the project file $CONFIG and its rules $STACK/mql_rules.yaml: edit them there"
    fi

    say "1/6 databases on $DB_SERVER"
    "$BIN/python" "$HERE/stackctl.py" databases "$LEADSCORE_DB_NAME" "$MLFLOW_DB" "$PREFECT_DB"

    # The two servers do not depend on each other: both start, then both are waited for
    # (each creates or migrates its tables on start, 20-40 s the first time).
    say "2/6 MLflow tracking server at $MLFLOW_URL (runs and registry in $MLFLOW_DB)"
    start mlflow "$BIN/mlflow" server \
        --backend-store-uri "postgresql+psycopg://$DB_SERVER/$MLFLOW_DB" \
        --artifacts-destination "file://$STACK/mlflow-artifacts" \
        --host 127.0.0.1 --port "$LEADSCORE_MLFLOW_PORT" --workers 2
    say "3/6 Prefect server at $PREFECT_URL (state in $PREFECT_DB)"
    PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://$DB_SERVER/$PREFECT_DB" \
        PREFECT_SERVER_ANALYTICS_ENABLED=false \
        start prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
    "$BIN/python" "$HERE/stackctl.py" wait-http "$MLFLOW_URL/health" 180 \
        "$(pidfile mlflow)" "$STACK/logs/mlflow.log"
    say "MLflow server answers"
    "$BIN/python" "$HERE/stackctl.py" wait-http "$PREFECT_API_URL/health" 180 \
        "$(pidfile prefect-server)" "$STACK/logs/prefect-server.log"
    say "Prefect server answers"

    say "4/6 work pool $POOL"
    if prefect_cli work-pool inspect "$POOL" >/dev/null 2>&1; then
        say "work pool $POOL exists"
    else
        prefect_cli work-pool create "$POOL" --type process >/dev/null
        say "work pool $POOL created"
    fi

    say "5/6 deployments of $CHECKOUT/prefect.yaml with $CONFIG"
    (
        cd "$CHECKOUT"
        LEADSCORE_CONFIG="$CONFIG" \
            LEADSCORE_SCORE_CRON=${LEADSCORE_SCORE_CRON:-"0 2 * * *"} \
            LEADSCORE_TRAIN_CRON=${LEADSCORE_TRAIN_CRON:-"0 3 * * 1"} \
            LEADSCORE_TIMEZONE=${LEADSCORE_TIMEZONE:-UTC} \
            prefect_cli deploy --all >>"$STACK/logs/deploy.log" 2>&1
    ) || die "prefect deploy failed; read $STACK/logs/deploy.log"
    say "deployed score/nightly-score, train/weekly-train and review/monthly-review"

    say "6/6 worker on pool $POOL"
    # No download bars from MLflow in the runs' logs.
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
        start worker "$BIN/prefect" worker start --pool "$POOL"
    "$BIN/python" "$HERE/stackctl.py" wait-worker "$PREFECT_API_URL" "$POOL" 120 \
        "$(pidfile worker)" "$STACK/logs/worker.log"

    say "up: MLflow $MLFLOW_URL, Prefect $PREFECT_URL (runs under /runs), worker online"
    say "point this shell at it: eval \"\$($0 env)\""
}

down() {
    stop worker
    stop prefect-server
    stop mlflow
    say "down"
}

status() {
    local name url
    for name in mlflow prefect-server worker; do
        case $name in
            mlflow) url="$MLFLOW_URL/health" ;;
            prefect-server) url="$PREFECT_API_URL/health" ;;
            worker) url="" ;;
        esac
        if ! running "$name"; then
            printf '%-15s stopped\n' "$name"
        elif [ -z "$url" ] || "$BIN/python" "$HERE/stackctl.py" answers "$url"; then
            printf '%-15s running (pid %s)\n' "$name" "$(cat "$(pidfile "$name")")"
        else
            printf '%-15s running (pid %s) but %s does not answer\n' \
                "$name" "$(cat "$(pidfile "$name")")" "$url"
        fi
    done
}

env_exports() {
    local var
    for var in PREFECT_API_URL LEADSCORE_DB_HOST LEADSCORE_DB_PORT LEADSCORE_DB_USER \
        LEADSCORE_DB_NAME LEADSCORE_MLFLOW_PORT; do
        printf 'export %s=%q\n' "$var" "${!var}"
    done
    printf 'export LEADSCORE_CONFIG=%q\n' "$CONFIG"
    printf 'export PATH=%q:"$PATH"\n' "$BIN"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    env) env_exports ;;
    *)
        echo "usage: $0 up|down|status|env   (settings: the comment at the top of $0)" >&2
        exit 2
        ;;
esac

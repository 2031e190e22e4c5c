# Shell helpers for scripts that need a throwaway redis-server. Source it; it defines:
#   free_port                 prints a free TCP port on 127.0.0.1
#   start_redis DIR [ARGS..]  starts redis-server on a free port with no persistence, logs in DIR;
#                             sets REDIS_PORT, REDIS_PID and REDIS_URL, and waits until it answers
#   stop_redis                stops it

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_redis() {
    local dir=$1; shift
    mkdir -p "$dir"
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis-$REDIS_PORT.log" --daemonize no "$@" &
    REDIS_PID=$!
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    for _ in $(seq 1 200); do
        if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "redis-server did not start; see $dir/redis-$REDIS_PORT.log" >&2
    return 1
}

stop_redis() {
    if [ -n "${REDIS_PID:-}" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
    fi
    REDIS_PID=""
}

# start_redis_cluster DIR N   starts N redis-server --cluster-enabled nodes (primaries, no replicas) and
#                             forms them with redis-cli --cluster create; sets CLUSTER_PIDS (array) and
#                             CLUSTER_SEEDS (127.0.0.1:PORT of each, comma-separated)
# stop_redis_cluster          stops them
start_redis_cluster() {
    local dir=$1 count=$2 port i seeds=()
    mkdir -p "$dir"
    CLUSTER_PIDS=()
    for i in $(seq 1 "$count"); do
        # The cluster bus listens on port + 10000: both below the ephemeral range (32768), where the load
        # generator's many client sockets would otherwise sit.
        while :; do port=$(( (RANDOM % 10000) + 12000 )); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null || break; done
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --cluster-enabled yes \
            --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 2000 --logfile "$dir/redis-$port.log" --daemonize no &
        CLUSTER_PIDS+=($!)
        seeds+=("127.0.0.1:$port")
        for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    done
    redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes > "$dir/cluster-create.log" 2>&1 || {
        echo "redis-cli --cluster create failed; see $dir/cluster-create.log" >&2; return 1; }
    for _ in $(seq 1 200); do
        redis-cli -p "${seeds[0]#*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        sleep 0.1
    done
    CLUSTER_SEEDS=$(IFS=,; echo "${seeds[*]}")
}

stop_redis_cluster() {
    for pid in "${CLUSTER_PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${CLUSTER_PIDS[@]:-}"; do wait "$pid" 2>/dev/null || true; done
    CLUSTER_PIDS=()
}

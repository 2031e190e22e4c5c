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

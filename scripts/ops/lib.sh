# Shared by the operator scripts: find channels-ctl and the Redis URL (default: the scripts/cluster Redis).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ctl=${CHANNELS_CTL:-$root/.build/debug/channels-ctl}
if [ ! -x "$ctl" ]; then (cd "$root" && swift build --product channels-ctl 2>&1 | grep -v "prohibited flag" | tail -1); fi
export CHANNELS_REDIS_URL=${CHANNELS_REDIS_URL:-redis://127.0.0.1:${CLUSTER_REDIS_PORT:-6390}}

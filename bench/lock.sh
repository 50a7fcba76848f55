#!/bin/bash
# Uncontended lock acquire + release pairs per second:
#   the lock class through do_pass (POST then DELETE with the token), on
#   the memory backend and on Redis, 2 nginx workers pinned to core 0;
#   beside raw Redis, redis-server pinned to core 0: SET key token NX PX
#   and the usual compare-and-delete script (GET == token then DEL), each
#   run by redis-benchmark on random keys; a pair costs the two.
# Every client (one connection each, wrk or redis-benchmark on core 1)
# acquires and releases a lock of its own, so no one waits.  Load goes to
# 127.0.0.1 only and every run stops by itself.
#
#   bench/lock.sh [seconds per run, default 5] [clients, default 16]
#
# (wrk calls request() once before the run, so one client starts with a
# release of a lock it does not hold: one 409 per run is expected.)

secs=${1:-5}
conns=${2:-16}
. "$(dirname "$0")/lib.sh"

start_redis 0

conf() {
    conf_head 2
    cat <<CONF
    do_storage $1;
    do_namespace locks lock;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location ~ ^/l/(?<o>\w+)\$ { do_pass locks name=\$o; }
    }
}
CONF
}

# each wrk thread has one connection and one lock: POST, DELETE, POST, ...
cat "$dir/threads.lua" - > "$dir/pairs.lua" <<'LUA'
local n = 0
request = function()
    n = n + 1
    local lock = "/l/bench" .. id .. "?token=t" .. id
    if n % 2 == 1 then
        return wrk.format("POST", lock .. "&ttl=30s")
    end
    return wrk.format("DELETE", lock)
end
LUA

printf "%-34s %12s %10s %8s\n" "case (2 workers, $conns clients)" "pairs/s" p99 non-2xx

declare -A pairs=()

run_nginx() {
    local name=$1 storage=$2 out rps p99 bad
    start_nginx "$(conf "$storage")"
    out=$(taskset -c 1 wrk -t"$conns" -c"$conns" -d"${secs}s" --latency \
              -s "$dir/pairs.lua" "http://127.0.0.1:$port/")
    stop_nginx
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    pairs[$name]=$(awk -v r="$rps" 'BEGIN { printf "%.0f", r / 2 }')
    printf "%-34s %12s %10s %8s\n" "$name" "${pairs[$name]}" "$p99" "${bad:-0}"
}

# redis-benchmark of one command: its requests per second
rb() {
    taskset -c 1 redis-benchmark -p "$rport" -c "$conns" -n "$((secs * 40000))" \
        -r 100000000 -q "$@" | awk '{ for (i = 1; i <= NF; i++)
                                        if ($i == "requests") print $(i - 1) }' \
        | tail -1
}

run_nginx "lock via do_pass, memory" "memory"
run_nginx "lock via do_pass, redis" "redis://127.0.0.1:$rport/0"

set_rps=$(rb SET "lock:__rand_int__" token NX PX 30000)
del_rps=$(rb EVAL "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end" 1 "lock:__rand_int__" token)
pairs[raw]=$(awk -v a="$set_rps" -v b="$del_rps" 'BEGIN { printf "%.0f", 1 / (1 / a + 1 / b) }')
printf "%-34s %12s %10s %8s\n" "raw redis SET NX PX + CAS delete" "${pairs[raw]}" "-" "-"
echo "(redis-benchmark: SET NX PX $set_rps/s, compare-and-delete $del_rps/s)"

echo
echo "do_pass memory / raw redis: $(ratio "${pairs[lock via do_pass, memory]}" "${pairs[raw]}")"
echo "do_pass redis  / raw redis: $(ratio "${pairs[lock via do_pass, redis]}" "${pairs[raw]}")"

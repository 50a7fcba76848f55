#!/bin/bash
# Memory with many distinct keys: requests whose keys never repeat go
# through do_limit (2 workers, memory storage: a bucket table of ZONE) for
# the load's seconds; every second it prints the live buckets, the PSS of
# nginx (master and workers, the zones included) and the table's free
# bytes, then keeps watching after the load stops, until the keys are
# forgotten (a full bucket is freed when a new key needs its room, so
# after the load the count stays until new keys come).  With the default rate=1r/m a key stays live for a minute (the
# case bench/limits.sh measures beside limit_req); with e.g. 100r/s one is
# forgotten about a second after its request.
#
#   bench/ratelimit-keys.sh [seconds of load, default 15] [rate, default 1r/m]
#                           [seconds to watch after, default 65]
#                           [bucket table size, default 256m]

secs=${1:-15}
rate=${2:-1r/m}
after=${3:-65}
zone=${4:-256m}
conns=64
. "$(dirname "$0")/lib.sh"

cat > "$dir/unique.lua" <<'LUA'
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, "/ok.txt?k=" .. n .. "-" .. math.random(1000000000))
end
LUA

start_nginx "$(conf_head 2)
    do_namespace dl rate_limiter rate=$rate size=$zone;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location / { do_limit dl key=\$arg_k; }
        location = /status { do_status; }
    }
}" 0-1

sample() {
    local st buckets free
    st=$(curl -s "http://127.0.0.1:$port/status")
    buckets=$(echo "$st" | perl -ne '/"table":\{"entries":(\d+)/ and print $1')
    free=$(echo "$st" | perl -ne '/"table":\{[^}]*"free":(\d+)/ and print $1')
    printf "%6s %12s %14s %12s\n" "$1" "$buckets" \
        "$(($(pss_kb "$pid") / 1024)) MiB" "$((free / 1024)) KiB"
}

printf "%6s %12s %14s %12s\n" second buckets "nginx PSS" "table free"
sample 0
taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" -s "$dir/unique.lua" \
    "http://127.0.0.1:$port/" > "$dir/wrk.out" &
wrk_pid=$!
for s in $(seq 1 "$secs"); do
    sleep 1
    sample "$s"
done
wait "$wrk_pid"
for s in $(seq $((secs + 1)) $((secs + after))); do
    sleep 1
    sample "$s"
done
awk '/requests in/ { print "distinct keys sent: " $1 }' "$dir/wrk.out"

#!/bin/bash
# Memory with many distinct keys: wrk sends requests whose keys never repeat
# (about 1e6 of them by default) through do_limit with 2 workers; every
# second it prints the objects held in memory, the workers' RSS and the
# storage zone's free bytes, then keeps watching after the load stops until
# the idle keys are forgotten.
#
#   bench/ratelimit-keys.sh [seconds of load, default 15]

secs=${1:-15}
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
    do_storage memory size=64m;
    do_namespace dl rate_limiter rate=100r/s;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location / { do_limit dl key=\$arg_k; }
        location = /status { do_status; }
    }
}" 0-1

sample() {
    local st objects free rss
    st=$(curl -s "http://127.0.0.1:$port/status")
    objects=$(echo "$st" | perl -ne 'my $n = 0; $n += $1 while /"objects":(\d+)/g; print $n')
    free=$(echo "$st" | perl -ne '/"free":(\d+)/ and print $1')
    rss=0
    for w in $(pgrep -P "$pid"); do
        rss=$((rss + $(awk '/VmRSS/ { print $2 }' "/proc/$w/status")))
    done
    printf "%6s %12s %14s %12s\n" "$1" "$objects" "$((rss / 1024)) MiB" \
        "$((free / 1024)) KiB"
}

printf "%6s %12s %14s %12s\n" second objects "workers RSS" "zone free"
sample 0
wrk -t1 -c"$conns" -d"${secs}s" -s "$dir/unique.lua" "http://127.0.0.1:$port/" \
    > "$dir/wrk.out" &
wrk_pid=$!
for s in $(seq 1 "$secs"); do
    sleep 1
    sample "$s"
done
wait "$wrk_pid"
for s in $(seq $((secs + 1)) $((secs + 4))); do
    sleep 1
    sample "$s"
done
awk '/requests in/ { print "distinct keys sent: " $1 }' "$dir/wrk.out"

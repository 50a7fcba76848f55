#!/bin/bash
# Memory with many distinct keys: wrk sends requests whose keys never repeat
# (about 1e6 of them by default) through do_limit with 2 workers; every
# second it prints the objects held in memory, the workers' RSS and the
# storage zone's free bytes, then keeps watching after the load stops until
# the idle keys are forgotten.  Load goes to 127.0.0.1 only and stops by
# itself.
#
#   bench/ratelimit-keys.sh [seconds of load, default 15]

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-15}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${DO_MODULE:-$top/build/ngx_http_do_module.so}
command -v wrk >/dev/null || { echo "wrk is missing: make deps"; exit 1; }
[ -f "$module" ] || { echo "build the module first: make build"; exit 1; }

dir=$(mktemp -d /tmp/ngx_do_bench_XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/html"
echo ok > "$dir/html/ok.txt"
pid=
cleanup() {
    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport')

cat > "$dir/unique.lua" <<'LUA'
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, "/ok.txt?k=" .. n .. "-" .. math.random(1000000000))
end
LUA

cat > "$dir/nginx.conf" <<CONF
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log error;
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    do_storage memory size=64m;
    do_namespace dl rate_limiter rate=100r/s;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location / { do_limit dl key=\$arg_k; }
        location = /status { do_status; }
    }
}
CONF

"$nginx" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/logs/stderr.log" &
pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/ok.txt" && break
    sleep 0.05
done

sample() {
    local st objects free rss
    st=$(curl -s "http://127.0.0.1:$port/status")
    objects=$(echo "$st" | perl -ne 'my $n = 0; $n += $1 while /"objects":(\d+)/g; print $n')
    free=$(echo "$st" | perl -ne '/"free":(\d+)/ and print $1')
    rss=0
    for w in $(pgrep -P "$pid"); do
        rss=$((rss + $(awk '/VmRSS/ { print $2 }' "/proc/$w/status")))
    done
    printf "%6s %12s %14s %12s\n" "$1" "$objects" "$((rss / 1024)) MiB" "$((free / 1024)) KiB"
}

printf "%6s %12s %14s %12s\n" second objects "workers RSS" "zone free"
sample 0
wrk -t1 -c64 -d"${secs}s" -s "$dir/unique.lua" "http://127.0.0.1:$port/" \
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

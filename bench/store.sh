#!/bin/bash
# store GET and incr throughput beside a plain `return 200`, with 1 and 4
# workers, measured with wrk in one run on this machine.  Prints req/s, p99
# and the ratio of each store location to `return 200` with the same
# workers.  Load goes to 127.0.0.1 only and every run stops by itself.
#
#   bench/store.sh [seconds per run, default 5] [connections, default 32]

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-5}
conns=${2:-32}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${DO_MODULE:-$top/build/ngx_http_do_module.so}
command -v wrk >/dev/null || { echo "wrk is missing: make deps"; exit 1; }
[ -f "$module" ] || { echo "build the module first: make build"; exit 1; }

dir=$(mktemp -d /tmp/ngx_do_bench_XXXXXX)
chmod 755 "$dir"
pid=
cleanup() {
    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport')

cat > "$dir/incr.lua" <<'LUA'
wrk.method = "POST"
LUA

start() {
    local workers=$1
    mkdir -p "$dir/logs"
    cat > "$dir/nginx.conf" <<CONF
load_module $module;
worker_processes $workers;
error_log $dir/logs/error.log warn;
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    do_namespace bench store;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port reuseport;
        location = /plain { return 200 "ok"; }
        location ~ ^/s/(?<o>\w+)$ { do_pass bench name=\$o; }
    }
}
CONF
    # nginx on core 0, wrk on core 1
    taskset -c 0 "$nginx" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        2>>"$dir/logs/stderr.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/plain" && break
        sleep 0.05
    done
    curl -s -o /dev/null -X PUT "http://127.0.0.1:$port/s/hot?key=k" -d value
}

stop() {
    kill -QUIT "$pid"
    wait "$pid" || true
    pid=
}

# prints "req/s p99"
measure() {
    local out
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    echo "$rps $p99"
}

printf "%-8s %-22s %12s %10s %8s\n" workers location "req/s" p99 ratio
for workers in 1 4; do
    start "$workers"
    read -r base base_p99 < <(measure "http://127.0.0.1:$port/plain")
    printf "%-8s %-22s %12s %10s %8s\n" "$workers" "return 200" "$base" "$base_p99" 1.00
    read -r get get_p99 < <(measure "http://127.0.0.1:$port/s/hot?key=k")
    printf "%-8s %-22s %12s %10s %8.2f\n" "$workers" "store GET (1 object)" \
        "$get" "$get_p99" "$(awk -v a="$get" -v b="$base" 'BEGIN { print a / b }')"
    read -r inc inc_p99 < <(measure -s "$dir/incr.lua" \
        "http://127.0.0.1:$port/s/hot?key=n&op=incr")
    printf "%-8s %-22s %12s %10s %8.2f\n" "$workers" "store incr (1 object)" \
        "$inc" "$inc_p99" "$(awk -v a="$inc" -v b="$base" 'BEGIN { print a / b }')"
    count=$(curl -s "http://127.0.0.1:$port/s/hot?key=n")
    echo "         (the object counted $count increments)"
    stop
done

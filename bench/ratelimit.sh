#!/bin/bash
# Rate limiting throughput, side by side in one run on this machine:
#   no gate | nginx limit_req | do_limit (memory storage)
# for one hot key and for 10k keys, with 1 worker and with 2 workers.
# nginx is pinned to core 0 and wrk to core 1.  Prints req/s, p99 and the
# ratio to limit_req.  Both limiters: rate=100r/s burst=50 nodelay, in front
# of a small static file (a `return` would run before the access phase).
# Load goes to 127.0.0.1 only and every run stops by itself.
#
#   bench/ratelimit.sh [seconds per run, default 5] [connections, default 64]

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-5}
conns=${2:-64}
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

cat > "$dir/keys.lua" <<'LUA'
local path = "/ok.txt?k="
request = function()
    return wrk.format(nil, path .. math.random(10000))
end
LUA

start() {
    local workers=$1 gate=$2
    cat > "$dir/nginx.conf" <<CONF
load_module $module;
worker_processes $workers;
error_log $dir/logs/error.log error;
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    keepalive_requests 1000000;
    limit_req_zone \$arg_k zone=lr:64m rate=100r/s;
    limit_req_log_level info;
    do_storage memory size=64m;
    do_namespace dl rate_limiter rate=100r/s burst=50;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location / { $gate }
    }
}
CONF
    taskset -c 0 "$nginx" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        2>>"$dir/logs/stderr.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/ok.txt" && break
        sleep 0.05
    done
}

stop() {
    kill -QUIT "$pid"
    wait "$pid" || true
    pid=
}

# prints "req/s p99 non2xx"
measure() {
    local out rps p99 bad
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    echo "$rps $p99 ${bad:-0}"
}

declare -A gates=(
    [none]=""
    [limit_req]="limit_req zone=lr burst=50 nodelay;"
    [do_limit]="do_limit dl key=\$arg_k;"
)

printf "%-8s %-10s %-10s %12s %10s %10s %8s\n" \
    workers keys gate "req/s" p99 "429s" "vs lr"
for workers in 1 2; do
    for keys in 1 10k; do
        declare -A rps=()
        for gate in none limit_req do_limit; do
            start "$workers" "${gates[$gate]}"
            if [ "$keys" = 1 ]; then
                read -r r p b < <(measure "http://127.0.0.1:$port/ok.txt?k=hot")
            else
                read -r r p b < <(measure -s "$dir/keys.lua" "http://127.0.0.1:$port/")
            fi
            stop
            rps[$gate]=$r
            ratio=$(awk -v a="$r" -v b="${rps[limit_req]:-$r}" 'BEGIN { printf "%.2f", a / b }')
            [ "$gate" = none ] && ratio=-
            printf "%-8s %-10s %-10s %12s %10s %10s %8s\n" \
                "$workers" "$keys" "$gate" "$r" "$p" "$b" "$ratio"
        done
    done
done

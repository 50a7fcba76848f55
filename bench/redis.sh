#!/bin/bash
# The redis backend beside the memory one, and beside "the OpenResty way",
# in one run on this machine (2 nginx workers pinned to core 0, wrk on
# core 1, redis-server unpinned):
#   store incr on one object: memory | redis
#   do_limit over 10k keys:  memory | redis | Lua + Redis fixed window
# The Lua peer is Debian's libnginx-mod-http-lua (installed here if
# missing) with a cosocket RESP client inline (INCR + EXPIRE per request,
# pipelined, keepalive pool), since Debian has no lua-resty-redis package.
# Prints req/s, p99, Redis commands per request, and ratios.  Load goes to
# 127.0.0.1 only and every run stops by itself.
#
#   bench/redis.sh [seconds per run, default 5] [connections, default 64]

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-5}
conns=${2:-64}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${DO_MODULE:-$top/build/ngx_http_do_module.so}
command -v wrk >/dev/null || { echo "wrk is missing: make deps"; exit 1; }
[ -f "$module" ] || { echo "build the module first: make build"; exit 1; }

if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libnginx-mod-http-lua >/dev/null
fi

dir=$(mktemp -d /tmp/ngx_do_bench_XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/html"
echo ok > "$dir/html/ok.txt"
pid=
rpid=
cleanup() {
    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport'
}

port=$(free_port)
rport=$(free_port)

redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --daemonize no > "$dir/logs/redis.log" 2>&1 &
rpid=$!
for _ in $(seq 100); do
    redis-cli -p "$rport" ping >/dev/null 2>&1 && break
    sleep 0.05
done

cat > "$dir/keys.lua" <<'LUA'
request = function()
    return wrk.format(nil, "/ok.txt?k=" .. math.random(10000))
end
LUA
cat > "$dir/incr.lua" <<'LUA'
wrk.method = "POST"
LUA

start() {
    local storage=$1 location=$2 modules=$3
    cat > "$dir/nginx.conf" <<CONF
$modules
load_module $module;
worker_processes 2;
error_log $dir/logs/error.log error;
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    keepalive_requests 1000000;
    do_storage $storage;
    do_namespace st store;
    do_namespace dl rate_limiter rate=100r/s burst=50;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location ~ ^/s/(?<o>\w+)\$ { do_pass st name=\$o; }
        location / { $location }
    }
}
CONF
    taskset -c 0 "$nginx" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        2>>"$dir/logs/stderr.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/ok.txt?k=1" && break
        sleep 0.05
    done
}

stop() {
    kill -QUIT "$pid"
    wait "$pid" || true
    pid=
}

# commands sent by clients (EVAL, INCR, ...): a script's own calls not counted
commands() {
    redis-cli -p "$rport" INFO commandstats \
        | awk -F'[=,:]' '/^cmdstat_(eval|evalsha|incr|expire)[^_]/ { n += $3 }
                        END { print n + 0 }'
}

# prints "req/s p99 requests"
measure() {
    local out rps p99 n
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    echo "$rps $p99 $n"
}

# "the OpenResty way": a fixed-window counter in Redis per key and second
cat > "$dir/gate.lua" <<'LUA'
local sock = ngx.socket.tcp()
sock:settimeout(1000)
local ok = sock:connect("127.0.0.1", tonumber(ngx.var.redis_port))
if not ok then
    return ngx.exit(503)
end
local key = "fw:" .. (ngx.var.arg_k or "") .. ":" .. math.floor(ngx.now())
sock:send("*2\r\n$4\r\nINCR\r\n$" .. #key .. "\r\n" .. key .. "\r\n"
          .. "*3\r\n$6\r\nEXPIRE\r\n$" .. #key .. "\r\n" .. key .. "\r\n"
          .. "$1\r\n2\r\n")
local n = sock:receive("*l")
sock:receive("*l")
sock:setkeepalive(10000, 128)
if not n or tonumber(string.sub(n, 2)) > 150 then
    return ngx.exit(429)
end
LUA

lua_gate="set \$redis_port $rport; access_by_lua_file $dir/gate.lua;"

lua_modules="load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"

redis="redis://127.0.0.1:$rport/0"

printf "%-34s %12s %10s %14s\n" "case (2 workers)" "req/s" p99 "redis cmd/req"
echo "(commands sent to Redis per request; a script counts as one)"

run() {
    local name=$1 storage=$2 location=$3 modules=$4; shift 4
    local before after r p n
    start "$storage" "$location" "$modules"
    before=$(commands)
    read -r r p n < <(measure "$@")
    sleep 1.2   # the last deferred flushes
    after=$(commands)
    stop
    printf "%-34s %12s %10s %14s\n" "$name" "$r" "$p" \
        "$(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN { printf "%.3f", (b - a) / n }')"
    eval "rps_${name//[^a-z0-9]/_}=$r"
}

run "store incr, memory"  "memory" "" "" -s "$dir/incr.lua" "http://127.0.0.1:$port/s/hot?key=n&op=incr"
run "store incr, redis"   "$redis" "" "" -s "$dir/incr.lua" "http://127.0.0.1:$port/s/hot?key=n&op=incr"
run "do_limit 10k, memory" "memory" "do_limit dl key=\$arg_k;" "" -s "$dir/keys.lua" "http://127.0.0.1:$port/"
run "do_limit 10k, redis"  "$redis" "do_limit dl key=\$arg_k;" "" -s "$dir/keys.lua" "http://127.0.0.1:$port/"
run "lua+redis 10k, fixed window" "memory" "$lua_gate" "$lua_modules" -s "$dir/keys.lua" "http://127.0.0.1:$port/"

echo
awk -v a="$rps_store_incr__redis" -v b="$rps_store_incr__memory" \
    'BEGIN { printf "store incr redis/memory:        %.2f\n", a / b }'
awk -v a="$rps_do_limit_10k__redis" -v b="$rps_do_limit_10k__memory" \
    'BEGIN { printf "do_limit redis/memory:          %.2f\n", a / b }'
awk -v a="$rps_do_limit_10k__redis" -v b="$rps_lua_redis_10k__fixed_window" \
    'BEGIN { printf "do_limit redis / lua+redis:     %.2f\n", a / b }'

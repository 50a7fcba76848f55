# Shared by the bench/*.sh scripts (sourced, not run): a temporary prefix,
# nginx started pinned to core 0 from a config file and stopped by its PID,
# free loopback ports, wrk pinned to core 1.  Every load goes to 127.0.0.1
# and stops by itself.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${DO_MODULE:-$top/build/ngx_http_do_module.so}
command -v wrk >/dev/null || { echo "wrk is missing: make deps"; exit 1; }
[ -f "$module" ] || { echo "build the module first: make build"; exit 1; }

dir=$(mktemp -d /tmp/ngx_do_bench_XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/logs" "$dir/html"
echo ok > "$dir/html/ok.txt"
echo "a secret for the benchmark run" > "$dir/secret"

# the start of every run's wrk script that gives each thread an id
cat > "$dir/threads.lua" <<'LUA'
local threads = 0
setup = function(thread)
    threads = threads + 1
    thread:set("id", threads)
end
LUA

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
        'print IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                     LocalPort => 0, Listen => 1)->sockport'
}

port=$(free_port)

# conf_head WORKERS [LOG LEVEL]: nginx.conf up to the inside of http {};
# the caller adds its own part and the closing brace
conf_head() {
    cat <<CONF
load_module $module;
worker_processes $1;
error_log $dir/logs/error.log ${2:-error};
pid $dir/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    keepalive_requests 1000000;
    do_secret $dir/secret;
CONF
}

# start_redis [CPUS]: a redis-server of the run's own on $rport
start_redis() {
    rport=$(free_port)
    ${1:+taskset -c "$1"} redis-server --port "$rport" --bind 127.0.0.1 \
        --save "" --appendonly no --dir "$dir" --daemonize no \
        > "$dir/logs/redis.log" 2>&1 &
    rpid=$!
    for _ in $(seq 100); do
        redis-cli -p "$rport" ping >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "redis-server did not start"; exit 1
}

# start_nginx CONF_TEXT [CPUS]: runs nginx in the foreground, waits for it
start_nginx() {
    printf '%s\n' "$1" > "$dir/nginx.conf"
    taskset -c "${2:-0}" "$nginx" -p "$dir" -c "$dir/nginx.conf" \
        -g 'daemon off;' 2>>"$dir/logs/stderr.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/ok.txt" && return
        sleep 0.05
    done
    echo "nginx did not start:"; cat "$dir/logs/stderr.log"; exit 1
}

stop_nginx() {
    kill -QUIT "$pid"
    wait "$pid" || true
    pid=
}

# measure WRK_ARGS...: prints "req/s p99 non-2xx requests", wrk on core 1
measure() {
    local out rps p99 bad n
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    echo "$rps $p99 ${bad:-0} $n"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

cat > "$dir/incr.lua" <<'LUA'
wrk.method = "POST"
LUA

cat > "$dir/keys.lua" <<'LUA'
request = function()
    return wrk.format(nil, "/ok.txt?k=" .. math.random(10000))
end
LUA

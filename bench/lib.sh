# Shared by the bench/*.sh scripts (sourced, not run): a temporary prefix,
# nginx started pinned to core 0 from a config file and stopped by its PID,
# free loopback ports, wrk pinned to core 1, medians, PSS, and the Lua +
# Redis limiter peer.  Every load goes to 127.0.0.1 and stops by itself.
# A script that sets bench_packages before sourcing gets those Debian
# packages installed when missing.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${DO_MODULE:-$top/build/ngx_http_do_module.so}

# install_missing PACKAGE...: apt-get update once, then install what is
# missing (as the Makefile's install_missing)
install_missing() {
    local p missing=
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing="$missing $p"
    done
    [ -z "$missing" ] && return
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        $missing >/dev/null
}

[ -n "${bench_packages:-}" ] && install_missing $bench_packages
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
    if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $dir"; else rm -rf "$dir"; fi
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

# start_nginx CONF_TEXT [CPUS]: runs nginx in the foreground, waits for it;
# fails (1), saying why, when it does not answer within 5 s
start_nginx() {
    printf '%s\n' "$1" > "$dir/nginx.conf"
    : > "$dir/logs/stderr.log"
    taskset -c "${2:-0}" "$nginx" -p "$dir" -c "$dir/nginx.conf" \
        -g 'daemon off;' 2>>"$dir/logs/stderr.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/ok.txt" && return
        sleep 0.05
    done
    echo "nginx did not start:"; cat "$dir/logs/stderr.log"
    kill -QUIT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    pid=
    return 1
}

stop_nginx() {
    kill -QUIT "$pid"
    wait "$pid" || true
    pid=
}

# measure WRK_ARGS...: prints "req/s p99 non-2xx requests socket-errors",
# wrk on core 1 (WRK_THREADS threads, default 1)
measure() {
    local out rps p99 bad n errs
    out=$(taskset -c 1 wrk -t"${WRK_THREADS:-1}" -c"$conns" -d"${secs}s" \
              --latency "$@")
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    errs=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {
                                            print $4 + $6 + $8 + $10 }')
    echo "$rps $p99 ${bad:-0} $n ${errs:-0}"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

# median NUMBER...: the middle one (the mean of the two middle ones)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit
        if (NR % 2) print v[(NR + 1) / 2]
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# to_us WRK_TIME: wrk's "850.00us", "1.25ms", "2.00s", "1.10m" in us
to_us() {
    awk -v v="$1" 'BEGIN {
        f = v ~ /us$/ ? 1 : v ~ /ms$/ ? 1000 : v ~ /m$/ ? 60e6 : 1e6
        printf "%.0f", v * f }'
}

# pss_kb PID: kB of proportional set size of PID and its children (nginx's
# master and workers; a shared zone counts once, split among them)
pss_kb() {
    local p t=0 k
    for p in "$1" $(pgrep -P "$1"); do
        k=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
        t=$((t + ${k:-0}))
    done
    echo "$t"
}

# EVAL/EVALSHA calls the Redis on $rport ran for clients so far (a
# script's own commands not counted)
redis_scripts() {
    redis-cli -p "$rport" INFO commandstats \
        | awk -F'[=,:]' '/^cmdstat_(eval|evalsha|eval_ro|evalsha_ro):/ {
                             n += $3 } END { print n + 0 }'
}

# The Lua + Redis peers run in Debian's libnginx-mod-http-lua with
# lua-resty-redis, which Debian ships as lua-nginx-redis ("nginx.redis").
lua_modules="load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"
lua_http="lua_package_path '/usr/share/lua/5.1/?.lua;;';"

# lua_gcra RATE_PER_SECOND BURST: writes the Lua + Redis limiter (GCRA on
# Redis's clock, one EVALSHA per request on a keepalive pool, key $arg_k)
# for the Redis on $rport and prints the location line that runs it
lua_gcra() {
    local t tau script sha
    t=$(awk -v r="$1" 'BEGIN { printf "%.0f", 1e6 / r }')
    tau=$((t * $2))
    script="local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now > tau then return 0 end
tat = tat + t
redis.call('SET', KEYS[1], string.format('%.0f', tat),
           'PX', math.floor((tat - now) / 1000) + 1)
return 1"
    sha=$(redis-cli -p "$rport" SCRIPT LOAD "$script")
    cat > "$dir/gcra.lua" <<LUA
local redis = require "nginx.redis"
local red = redis:new()
red:set_timeout(1000)
local ok, err = red:connect("127.0.0.1", $rport)
if not ok then
    ngx.log(ngx.ERR, "redis: ", err)
    return ngx.exit(503)
end
local key = "gcra:" .. (ngx.var.arg_k or "")
local res
res, err = red:evalsha("$sha", 1, key, "$t", "$tau")
if not res and err and string.find(err, "NOSCRIPT", 1, true) then
    res, err = red:eval([==[$script]==], 1, key, "$t", "$tau")
end
if not res then
    ngx.log(ngx.ERR, "redis: ", err)
    return ngx.exit(503)
end
red:set_keepalive(10000, 128)
if res == 0 then
    return ngx.exit(429)
end
LUA
    echo "access_by_lua_file $dir/gcra.lua;"
}

cat > "$dir/incr.lua" <<'LUA'
wrk.method = "POST"
LUA

cat > "$dir/keys.lua" <<'LUA'
request = function()
    return wrk.format(nil, "/ok.txt?k=" .. math.random(10000))
end
LUA

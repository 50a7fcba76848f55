#!/bin/bash
# The redis backend beside the memory one, and beside "the OpenResty way",
# in one run on this machine (2 nginx workers pinned to core 0, wrk on
# core 1, redis-server unpinned):
#   store incr on one object: memory | redis
#   store get on one object:  memory | redis (a read checks the version)
#   do_limit over 10k keys:  memory | redis | Lua + Redis fixed window
# The Lua peer is Debian's libnginx-mod-http-lua (installed here if
# missing) with a cosocket RESP client inline (INCR + EXPIRE per request,
# pipelined, keepalive pool), since Debian has no lua-resty-redis package.
# Prints req/s, p99, Redis commands per request, and ratios.  Load goes to
# 127.0.0.1 only and every run stops by itself.
#
#   bench/redis.sh [seconds per run, default 5] [connections, default 64]

secs=${1:-5}
conns=${2:-64}
. "$(dirname "$0")/lib.sh"

if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        libnginx-mod-http-lua >/dev/null
fi

start_redis

conf() {
    echo "$3"
    conf_head 2
    cat <<CONF
    do_storage $1;
    do_namespace st store;
    do_namespace dl rate_limiter rate=100r/s burst=50;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location ~ ^/s/(?<o>\w+)\$ { do_pass st name=\$o; }
        location / { $2 }
    }
}
CONF
}

# commands sent by clients (EVAL, INCR, ...): a script's own calls not counted
commands() {
    redis-cli -p "$rport" INFO commandstats \
        | awk -F'[=,:]' '/^cmdstat_(eval|evalsha|incr|expire)[^_]/ { n += $3 }
                        END { print n + 0 }'
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

declare -A rps=()

run() {
    local name=$1 storage=$2 location=$3 modules=$4; shift 4
    local before after r p n
    start_nginx "$(conf "$storage" "$location" "$modules")"
    before=$(commands)
    read -r r p _ n < <(measure "$@")
    sleep 1.2   # the last deferred flushes
    after=$(commands)
    stop_nginx
    printf "%-34s %12s %10s %14s\n" "$name" "$r" "$p" \
        "$(awk -v a="$before" -v b="$after" -v n="$n" \
               'BEGIN { printf "%.3f", (b - a) / n }')"
    rps[$name]=$r
}

run "store incr, memory"  "memory" "" "" -s "$dir/incr.lua" "http://127.0.0.1:$port/s/hot?key=n&op=incr"
run "store incr, redis"   "$redis" "" "" -s "$dir/incr.lua" "http://127.0.0.1:$port/s/hot?key=n&op=incr"
run "store get, memory"   "memory" "" "" "http://127.0.0.1:$port/s/hot?key=n"
run "store get, redis"    "$redis" "" "" "http://127.0.0.1:$port/s/hot?key=n"
run "do_limit 10k, memory" "memory" "do_limit dl key=\$arg_k;" "" -s "$dir/keys.lua" "http://127.0.0.1:$port/"
run "do_limit 10k, redis"  "$redis" "do_limit dl key=\$arg_k;" "" -s "$dir/keys.lua" "http://127.0.0.1:$port/"
run "lua+redis 10k, fixed window" "memory" "$lua_gate" "$lua_modules" -s "$dir/keys.lua" "http://127.0.0.1:$port/"

echo
echo "store incr redis/memory:    $(ratio "${rps[store incr, redis]}" "${rps[store incr, memory]}")"
echo "store get redis/memory:     $(ratio "${rps[store get, redis]}" "${rps[store get, memory]}")"
echo "do_limit redis/memory:      $(ratio "${rps[do_limit 10k, redis]}" "${rps[do_limit 10k, memory]}")"
echo "do_limit redis / lua+redis: $(ratio "${rps[do_limit 10k, redis]}" "${rps[lua+redis 10k, fixed window]}")"

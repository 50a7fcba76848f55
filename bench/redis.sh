#!/bin/bash
# The redis backend beside the memory one, and beside "the OpenResty way",
# in one run on this machine (2 nginx workers pinned to core 0, wrk on
# core 1, redis-server unpinned):
#   store incr on one object: memory | redis
#   store get on one object:  memory | redis (a read checks the version)
#   do_limit over 10k keys:  memory | redis | Lua + Redis GCRA
# The Lua peer (lib.sh's lua_gcra) is Debian's libnginx-mod-http-lua with
# lua-resty-redis (Debian's lua-nginx-redis; both installed here if
# missing): one EVALSHA per request on a keepalive pool.  Prints req/s,
# p99, Redis scripts (EVAL/EVALSHA) per request, and ratios.  Load goes to
# 127.0.0.1 only and every run stops by itself.  bench/limits.sh runs the
# do_limit rows side by side with medians.
#
#   bench/redis.sh [seconds per run, default 5] [connections, default 64]

secs=${1:-5}
conns=${2:-64}
bench_packages="libnginx-mod-http-lua lua-nginx-redis wrk redis-server"
. "$(dirname "$0")/lib.sh"

start_redis

conf() {
    echo "$3"
    conf_head 2
    cat <<CONF
    ${3:+$lua_http}
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

lua_gate=$(lua_gcra 100 50)

redis="redis://127.0.0.1:$rport/0"

printf "%-34s %12s %10s %14s\n" "case (2 workers)" "req/s" p99 "scripts/req"
echo "(EVAL/EVALSHA sent to Redis per request)"

declare -A rps=()

run() {
    local name=$1 storage=$2 location=$3 modules=$4; shift 4
    local before after r p n
    start_nginx "$(conf "$storage" "$location" "$modules")"
    before=$(redis_scripts)
    read -r r p _ n _ < <(measure "$@")
    sleep 1.2   # the last deferred flushes
    after=$(redis_scripts)
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
run "lua+redis 10k, gcra" "memory" "$lua_gate" "$lua_modules" -s "$dir/keys.lua" "http://127.0.0.1:$port/"

echo
echo "store incr redis/memory:    $(ratio "${rps[store incr, redis]}" "${rps[store incr, memory]}")"
echo "store get redis/memory:     $(ratio "${rps[store get, redis]}" "${rps[store get, memory]}")"
echo "do_limit redis/memory:      $(ratio "${rps[do_limit 10k, redis]}" "${rps[do_limit 10k, memory]}")"
echo "do_limit redis / lua+redis: $(ratio "${rps[do_limit 10k, redis]}" "${rps[lua+redis 10k, gcra]}")"

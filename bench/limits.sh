#!/bin/bash
# ngx_do beside its peers, every case in one run on this machine, then one
# table: case | ngx_do | peer | ratio (ngx_do / peer).  Load goes to
# 127.0.0.1 from core 1 (wrk, or bench/latency.c built here); nginx runs
# with 1 worker pinned to core 0 or 2 workers unpinned; redis-server is
# unpinned.  Each case alternates ngx_do and its peer, REPS times (ngx_do,
# peer, ngx_do, peer, ...), each run on a fresh nginx, and reports the
# medians; the raw runs are printed as they end.  Limits never reject in
# the throughput cases (rate=1000000r/s burst=1000, a 2-byte static file
# behind), 64 connections.
#
#   limit    do_limit vs limit_req: 1 hot key and 10k random keys, 1 worker
#            and 2 workers; req/s and p99
#   store    store incr and store GET on one object vs `return 200`,
#            1 worker
#   redis    do_limit on Redis vs a Lua + Redis GCRA (one EVALSHA per
#            request, keepalive pool), 10k keys, 2 workers
#   newkeys  do_limit vs limit_req with every key new (rate=1r/m: each key
#            stays live a minute), 2 workers, NEW_SECS; then the memory per
#            live key: PSS of nginx (master and workers, zones included)
#            over the keys that passed (ngx_do with fail=closed, so a key
#            that passed is a key decided)
#   lock     lock acquire + release cycles/s on Redis vs a Lua + Redis lock
#            (SET NX PX, then a compare-and-delete script), 64 clients, a
#            lock each (distinct) or all on one (hot: ngx_do queues the
#            waiters, the peer retries after 1 ms doubling to 16 ms)
#   forward  what a call forwarded to the owner worker adds, p50 and p99:
#            store GET on one object, 2 workers, REQUESTS sequential
#            requests on a connection of each kind, interleaved
#   million  KEYS distinct keys (rate=1r/m), each hit once: req/s on new
#            keys and the PSS of nginx once all are live, do_limit
#            (its bucket table size=256m) vs limit_req (zone 256m)
#
# The Lua peers run in Debian's libnginx-mod-http-lua with lua-resty-redis
# (Debian's lua-nginx-redis); missing packages are installed with apt-get.
# A run that fails shows its reason in the table instead of a figure.
#
#   bench/limits.sh [--quick] [--secs N] [--reps N] [--new-secs N]
#                   [--keys N] [--requests N] [--zone SIZE] [--only LIST]
#
# Defaults: 10 s per run, 3 repetitions, 25 s with new keys, 1000000 keys,
# 50000 requests per side for the forwarding cost, a 256m bucket table for the new
# keys; --quick checks that everything works (1 s runs, 1 repetition,
# 20000 keys, 2000 requests); --only picks cases (e.g. limit,forward).

secs=10
reps=3
new_secs=25
keys=1000000
requests=50000
zone=256m
only=limit,store,redis,newkeys,lock,forward,million

while [ $# -gt 0 ]; do
    case $1 in
    --quick)    secs=1 reps=1 new_secs=1 keys=20000 requests=2000 ;;
    --secs)     secs=$2; shift ;;
    --reps)     reps=$2; shift ;;
    --new-secs) new_secs=$2; shift ;;
    --keys)     keys=$2; shift ;;
    --requests) requests=$2; shift ;;
    --zone)     zone=$2; shift ;;
    --only)     only=$2; shift ;;
    *)          sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 1 ;;
    esac
    shift
done

conns=64
bench_packages="libnginx-mod-http-lua lua-nginx-redis wrk redis-server"
. "$(dirname "$0")/lib.sh"

# a failed run is reported, not fatal
set +e

cc -O2 -Wall -Wextra -o "$dir/latency" "$top/bench/latency.c" \
    || { echo "bench/latency.c does not build"; exit 1; }

fast="rate=1000000r/s burst=1000"
url="http://127.0.0.1:$port"

wants() { [[ ",$only," == *",$1,"* ]]; }


# --- the rows and their figures ---------------------------------------

declare -a rows=()
declare -A label=() vals=() p99s=() fails=() fig=() ratio_of=()

# row ID LABEL: a row of the final table, in order
row() {
    rows+=("$1")
    label[$1]=$(printf '%s' "$2" | tr -s ' \n' ' ')
}

# record ID SIDE VALUE [P99_US]: one run's figure
record() {
    vals[$1.$2]+=" $3"
    [ -n "${4:-}" ] && p99s[$1.$2]+=" $4"
}

# fail ID SIDE REASON
fail() {
    fails[$1.$2]=$3
    raw "$1" "$2" "" "failed: $3"
}

# k: 51234 -> 51.2k
k() {
    awk -v v="$1" 'BEGIN {
        if (v >= 1e6) printf "%.2fM", v / 1e6
        else if (v >= 1e4) printf "%.1fk", v / 1e3
        else if (v >= 1e3) printf "%.2fk", v / 1e3
        else printf "%.0f", v }'
}

# ms: microseconds as "850 us" or "1.25 ms"
ms() {
    awk -v v="$1" 'BEGIN {
        if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f us", v }'
}

# mb: kB as MB
mb() {
    awk -v v="$1" 'BEGIN { printf "%.0f MB", v / 1024 }'
}

# side_fig ID SIDE UNIT: "51.2k req/s, p99 1.25 ms" from the medians
side_fig() {
    local v p
    # shellcheck disable=SC2086
    v=$(median ${vals[$1.$2]:-})
    if [ -z "$v" ]; then
        echo "failed: ${fails[$1.$2]:-no run}"
        return
    fi
    # shellcheck disable=SC2086
    p=$(median ${p99s[$1.$2]:-})
    echo "$(k "$v") $3${p:+, p99 $(ms "$p")}"
}

# settle ID UNIT: the figures and the ratio of a throughput row
settle() {
    local d p dp pp
    fig[$1.ngx_do]=$(side_fig "$1" ngx_do "$2")
    fig[$1.peer]=$(side_fig "$1" peer "$2")
    # shellcheck disable=SC2086
    d=$(median ${vals[$1.ngx_do]:-})
    # shellcheck disable=SC2086
    p=$(median ${vals[$1.peer]:-})
    # shellcheck disable=SC2086
    dp=$(median ${p99s[$1.ngx_do]:-})
    # shellcheck disable=SC2086
    pp=$(median ${p99s[$1.peer]:-})
    ratio_of[$1]=-
    [ -n "$d" ] && [ -n "$p" ] && ratio_of[$1]=$(ratio "$d" "$p")
    [ "${ratio_of[$1]}" != - ] && [ -n "$dp" ] && [ -n "$pp" ] \
        && ratio_of[$1]+=" (p99 $(ratio "$dp" "$pp"))"
}

# raw ID SIDE REP TEXT...: one line of the raw runs
raw() {
    local id=$1 side=$2 rep=$3
    shift 3
    printf "  %-14s %-6s %-3s %s\n" "$id" "$side" "${rep:+#$rep}" "$*"
}


# --- nginx configurations -----------------------------------------------

# conf WORKERS MODULES HTTP_LINES LOCATIONS: a whole nginx.conf
conf() {
    echo "$2"
    conf_head "$1"
    cat <<CONF
    $3
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location = /status { do_status; }
        $4
    }
}
CONF
}

printf 'ok' > "$dir/html/ok.txt"

# the keys of a run with new keys: /ok.txt?k=0, 1, 2, ...
newkeys_uri="/ok.txt?k="


# --- runs ------------------------------------------------------------------

# start_error: why nginx did not start, in one line
start_error() {
    grep -m1 -o 'emerg\].*' "$dir/start.out" | sed 's/^emerg\] [0-9#]*: //' \
        | grep . || echo "nginx did not start"
}

# wrk_run ID SIDE REP CONF CPUS WRK_ARGS...: one wrk run on a fresh nginx;
# the functions named by before_start, before_run (nginx is up) and
# after_run (given the requests made; it prints a note) run around it
wrk_run() {
    local id=$1 side=$2 rep=$3 cnf=$4 cpus=$5 r p b n e note=
    shift 5
    [ -n "${before_start:-}" ] && $before_start
    if ! start_nginx "$cnf" "$cpus" > "$dir/start.out" 2>&1; then
        fail "$id" "$side" "$(start_error)"
        return 1
    fi
    [ -n "${before_run:-}" ] && $before_run
    read -r r p b n e < <(measure "$@")
    [ -n "${after_run:-}" ] && note=$($after_run "$n")
    stop_nginx
    if [ -z "$r" ]; then
        fail "$id" "$side" "wrk measured nothing"
        return 1
    fi
    p=$(to_us "$p")
    raw "$id" "$side" "$rep" "$(printf \
        "%9s req/s  p99 %-9s  non-2xx %s  socket errors %s%s" \
        "$r" "$(ms "$p")" "$b" "$e" "${note:+  $note}")"
    record "$id" "$side" "$r" "$p"
}

# pair ID LABEL CONF_DO CONF_PEER CPUS WRK_ARGS...: ngx_do, peer, ngx_do, ...
pair() {
    local id=$1 do_conf=$3 peer_conf=$4 cpus=$5 rep
    row "$id" "$2"
    shift 5
    echo "$id: ${label[$id]}"
    for rep in $(seq "$reps"); do
        wrk_run "$id" ngx_do "$rep" "$do_conf" "$cpus" "$@"
        wrk_run "$id" peer "$rep" "$peer_conf" "$cpus" "$@"
    done
    settle "$id" req/s
}

flush_redis() {
    redis-cli -p "$rport" FLUSHALL > /dev/null
}

# before/after a Redis run: the scripts it sent per request
scripts_before() {
    scripts0=$(redis_scripts)
}

scripts_after() {
    sleep 1.2   # the last deferred flushes
    awk -v a="$scripts0" -v b="$(redis_scripts)" -v n="$1" \
        'BEGIN { printf "Redis EVAL/EVALSHA per request %.3f", (b - a) / n }'
}


# --- limit: do_limit vs limit_req ------------------------------------------

limit_rows() {
    local w cpus key name args do_conf peer_conf http
    http="limit_req_zone \$arg_k zone=lr:64m rate=1000000r/s;
    limit_req_log_level info;
    do_namespace dl rate_limiter $fast size=64m;"
    for w in 1 2; do
        cpus=0
        [ "$w" = 2 ] && cpus=0-1
        do_conf=$(conf "$w" "" "$http" \
                       "location / { do_limit dl key=\$arg_k; }")
        peer_conf=$(conf "$w" "" "$http" \
                         "location / { limit_req zone=lr burst=1000 nodelay; }")
        for key in hot 10k; do
            if [ "$key" = hot ]; then
                name="1 hot key"
                args=("$url/ok.txt?k=hot")
            else
                name="10k keys"
                args=(-s "$dir/keys.lua" "$url/")
            fi
            [ "$w" = 1 ] && name+=", 1 worker" || name+=", 2 workers"
            pair "limit.$key.$w" "do_limit vs limit_req, $name" \
                 "$do_conf" "$peer_conf" "$cpus" "${args[@]}"
        done
    done
}


# --- store: incr and GET vs return 200 -----------------------------------

put_value() {
    curl -s -o /dev/null -X PUT "$url/s/hot?key=k" -d value
}

store_rows() {
    local cnf rep
    cnf=$(conf 1 "" "do_namespace st store;" \
        "location = /plain { return 200 \"ok\"; }
        location ~ ^/s/(?<o>\\w+)\$ { do_pass st name=\$o; }")
    row store.incr "store incr vs \`return 200\`, 1 worker"
    row store.get "store GET vs \`return 200\`, 1 worker"
    echo "store: store incr, return 200, store GET (one object), 1 worker"
    for rep in $(seq "$reps"); do
        wrk_run store.incr ngx_do "$rep" "$cnf" 0 \
            -s "$dir/incr.lua" "$url/s/hot?key=n&op=incr"
        wrk_run store.plain peer "$rep" "$cnf" 0 "$url/plain"
        before_run=put_value wrk_run store.get ngx_do "$rep" "$cnf" 0 \
            "$url/s/hot?key=k"
    done
    vals[store.incr.peer]=${vals[store.plain.peer]:-}
    vals[store.get.peer]=${vals[store.plain.peer]:-}
    p99s[store.incr.peer]=${p99s[store.plain.peer]:-}
    p99s[store.get.peer]=${p99s[store.plain.peer]:-}
    fails[store.incr.peer]=${fails[store.plain.peer]:-}
    fails[store.get.peer]=${fails[store.plain.peer]:-}
    settle store.incr req/s
    settle store.get req/s
}


# --- redis: do_limit on Redis vs Lua + Redis -------------------------------

redis_rows() {
    local do_conf peer_conf gate
    gate=$(lua_gcra 1000000 1000)
    do_conf=$(conf 2 "" "do_storage redis://127.0.0.1:$rport/0;
    do_namespace dl rate_limiter $fast;" \
        "location / { do_limit dl key=\$arg_k; }")
    peer_conf=$(conf 2 "$lua_modules" "$lua_http" "location / { $gate }")
    before_start=flush_redis before_run=scripts_before \
        after_run=scripts_after pair redis \
        "do_limit on Redis vs Lua+Redis (GCRA), 10k keys, 2 workers" \
        "$do_conf" "$peer_conf" 0-1 -s "$dir/keys.lua" "$url/"
}


# --- newkeys and million: every key new -----------------------------------

# status_line: objects held, and the limiter's bucket table, from do_status
status_line() {
    curl -s "$url/status" | perl -ne '
        my $n = 0; $n += $1 while /"objects":(\d+)/g;
        my ($e, $s, $f) =
            /"table":\{"entries":(\d+),"size":(\d+),"free":(\d+)/;
        printf "objects %d, buckets %d, table %.0f of %.0f MB used", $n,
               $e, ($s - $f) / 1048576, $s / 1048576 if defined $s'
}

# still_limited OK: of 20 keys among the first OK sent, how many a second
# request finds limited (429): they are live
still_limited() {
    local i n=0
    for i in $(seq 0 19); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' \
               "$url$newkeys_uri$((i * $1 / 20))")" = 429 ] && n=$((n + 1))
    done
    echo "$n/20"
}

# flood_run ID SIDE REP CONF LATENCY_ARGS...: new keys on a fresh nginx
# (2 workers), then its PSS; records req/s and p99 (ID), the PSS in kB
# (ID.mem) and the keys that passed (ID.keys)
flood_run() {
    local id=$1 side=$2 rep=$3 cnf=$4 out idle pss ok rps p99 live st per
    shift 4
    if ! start_nginx "$cnf" 0-1 > "$dir/start.out" 2>&1; then
        fail "$id" "$side" "$(start_error)"
        fail "$id.mem" "$side" "nginx did not start"
        return 1
    fi
    idle=$(pss_kb "$pid")
    out=$(taskset -c 1 "$dir/latency" -p "$port" -u "$newkeys_uri" \
              -c "$conns" "$@" 2>&1)
    pss=$(pss_kb "$pid")
    st=
    [ "$side" = ngx_do ] && st=$(status_line)
    ok=$(field ok "$out")
    live=
    [ -n "$ok" ] && [ "$ok" -gt 0 ] && live=$(still_limited "$ok")
    stop_nginx
    rps=$(field rps "$out")
    if [ -z "$rps" ] || [ "${ok:-0}" -eq 0 ]; then
        fail "$id" "$side" "$(echo "$out" | tail -1)"
        fail "$id.mem" "$side" "no key passed"
        return 1
    fi
    p99=$(field p99_us "$out")
    per=$(awk -v p="$pss" -v n="$ok" 'BEGIN { printf "%.0f", p * 1024 / n }')
    raw "$id" "$side" "$rep" "$(printf "%9s req/s  p99 %-9s  " \
        "$rps" "$(ms "$p99")")$ok keys passed of $(field answered "$out")" \
        "answered ($(field rejected "$out") rejected, $(field other "$out")" \
        "other, $(field errors "$out") errors) in $(field seconds "$out") s"
    raw "$id" "" "" "PSS $(mb "$pss") ($(mb "$idle") before the load) =" \
        "$per B per key; $live still limited${st:+; $st}"
    record "$id" "$side" "$rps" "$p99"
    record "$id.mem" "$side" "$pss"
    record "$id.keys" "$side" "$ok"
}

# field NAME LINE: the value of NAME= in a latency result line
field() {
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -1
}

# settle_mem ID: "1741 B per key (918 MB / 554k keys)" for each side (the
# million row: "1172 MB (1229 B per key, 1.00M keys)")
settle_mem() {
    local side m n per d p
    for side in ngx_do peer; do
        # shellcheck disable=SC2086
        m=$(median ${vals[$1.mem.$side]:-})
        # shellcheck disable=SC2086
        n=$(median ${vals[$1.keys.$side]:-})
        if [ -z "$m" ] || [ -z "$n" ]; then
            fig[$1.mem.$side]="failed: ${fails[$1.mem.$side]:-no run}"
            continue
        fi
        per=$(awk -v m="$m" -v n="$n" 'BEGIN { printf "%.0f", m * 1024 / n }')
        vals[$1.per.$side]=$per
        if [ "$1" = million ]; then
            fig[$1.mem.$side]="$(mb "$m") ($per B per key, $(k "$n") keys)"
        else
            fig[$1.mem.$side]="$per B per key ($(mb "$m") / $(k "$n") keys)"
        fi
    done
    d=${vals[$1.per.ngx_do]:-}
    p=${vals[$1.per.peer]:-}
    ratio_of[$1.mem]=-
    [ -n "$d" ] && [ -n "$p" ] && ratio_of[$1.mem]="$(ratio "$d" "$p")x"
}

newkeys_confs() {
    do_conf=$(conf 2 "" "do_namespace dl rate_limiter rate=1r/m fail=closed size=$zone;" \
        "location / { do_limit dl key=\$arg_k; }")
    peer_conf=$(conf 2 "" "limit_req_zone \$arg_k zone=lr:256m rate=1r/m;
    limit_req_status 429;" "location / { limit_req zone=lr; }")
}

# flood_rows ID LABEL MEM_LABEL LATENCY_ARGS...
flood_rows() {
    local id=$1 rep do_conf peer_conf
    row "$id" "$2"
    row "$id.mem" "$3"
    shift 3
    newkeys_confs
    echo "$id: ${label[$id]}; then ${label[$id.mem]}"
    for rep in $(seq "$reps"); do
        flood_run "$id" ngx_do "$rep" "$do_conf" "$@"
        flood_run "$id" peer "$rep" "$peer_conf" "$@"
    done
    settle "$id" req/s
    settle_mem "$id"
}


# --- lock: acquire + release cycles ----------------------------------------

# each wrk thread is one client with one connection: POST (acquire, waiting
# up to 5 s), then DELETE (release) once it holds the lock; done() prints
# the releases that succeeded
write_lock_lua() {
    cat > "$dir/lock-$1.lua" <<LUA
local threads = {}
local n = 0
setup = function(thread)
    n = n + 1
    thread:set("id", n)
    table.insert(threads, thread)
end
cycles = 0
local held = false
request = function()
    local lock = "/l/" .. ("$1" == "hot" and "hot" or "b" .. id)
    if held then
        return wrk.format("DELETE", lock .. "?token=t" .. id)
    end
    return wrk.format("POST", lock .. "?token=t" .. id .. "&ttl=30s&wait=5s")
end
response = function(status)
    if held then
        if status == 200 then
            cycles = cycles + 1
        end
        held = false
    else
        held = status == 200
    end
end
done = function(summary)
    local c = 0
    for _, t in ipairs(threads) do
        c = c + t:get("cycles")
    end
    io.write(string.format("cycles %d seconds %.3f\n", c,
                           summary.duration / 1e6))
end
LUA
}

write_lock_peer() {
    local cad sha
    cad="if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0"
    sha=$(redis-cli -p "$rport" SCRIPT LOAD "$cad")
    cat > "$dir/lock.lua" <<LUA
local redis = require "nginx.redis"
local red = redis:new()
red:set_timeout(2000)
local ok, err = red:connect("127.0.0.1", $rport)
if not ok then
    ngx.log(ngx.ERR, "redis: ", err)
    return ngx.exit(503)
end
local key = "lock:" .. ngx.var.o
local token = ngx.var.arg_token or ""
local method = ngx.req.get_method()
local status, res
if method == "POST" then
    local ttl = tonumber(string.match(ngx.var.arg_ttl or "", "^%d+")) or 30
    local wait = tonumber(string.match(ngx.var.arg_wait or "", "^%d+")) or 0
    local deadline = ngx.now() + wait
    local step = 0.001
    while true do
        res, err = red:set(key, token, "NX", "PX", ttl * 1000)
        if not res then
            ngx.log(ngx.ERR, "redis: ", err)
            return ngx.exit(503)
        end
        if res ~= ngx.null then
            status = 200
            break
        end
        if ngx.now() >= deadline then
            status = 423
            break
        end
        ngx.sleep(step)
        step = math.min(step * 2, 0.016)
    end
elseif method == "DELETE" then
    res, err = red:evalsha("$sha", 1, key, token)
    if not res and err and string.find(err, "NOSCRIPT", 1, true) then
        res, err = red:eval([==[$cad]==], 1, key, token)
    end
    if not res then
        ngx.log(ngx.ERR, "redis: ", err)
        return ngx.exit(503)
    end
    status = res == 1 and 200 or 409
else
    return ngx.exit(405)
end
red:set_keepalive(10000, 128)
ngx.status = status
ngx.say(status == 200 and '{"token":"' .. token .. '"}' or "{}")
LUA
}

# lock_run ID SIDE REP CONF KIND
lock_run() {
    local id=$1 side=$2 rep=$3 cnf=$4 out c s p99 rps
    flush_redis
    if ! start_nginx "$cnf" 0-1 > "$dir/start.out" 2>&1; then
        fail "$id" "$side" "$(start_error)"
        return 1
    fi
    out=$(taskset -c 1 wrk -t"$conns" -c"$conns" -d"${secs}s" --latency \
              -s "$dir/lock-$5.lua" "$url/")
    stop_nginx
    read -r _ c _ s < <(echo "$out" | grep '^cycles ')
    if [ -z "$c" ] || [ "$c" -eq 0 ]; then
        fail "$id" "$side" "no cycle completed"
        return 1
    fi
    rps=$(awk -v c="$c" -v s="$s" 'BEGIN { printf "%.0f", c / s }')
    p99=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    raw "$id" "$side" "$rep" "$(printf "%9s cycles/s  p99 %-9s" \
        "$rps" "$(ms "$p99")") (a request)  $c cycles in $s s  non-2xx" \
        "$(echo "$out" | awk '/Non-2xx/ { n = $5 } END { print n + 0 }')"
    record "$id" "$side" "$rps"
}

lock_rows() {
    local do_conf peer_conf kind rep id loc
    loc='location ~ ^/l/(?<o>\w+)$'
    write_lock_peer
    do_conf=$(conf 2 "" "do_storage redis://127.0.0.1:$rport/0;
    do_namespace locks lock;" "$loc { do_pass locks name=\$o; }")
    peer_conf=$(conf 2 "$lua_modules" "$lua_http" \
                     "$loc { content_by_lua_file $dir/lock.lua; }")
    for kind in distinct hot; do
        id=lock.$kind
        write_lock_lua "$kind"
        if [ "$kind" = distinct ]; then
            row "$id" "lock acquire+release on Redis vs Lua+Redis,
                       distinct keys, $conns clients"
        else
            row "$id" "the same, one hot key (contended)"
        fi
        echo "$id: ${label[$id]}"
        for rep in $(seq "$reps"); do
            lock_run "$id" ngx_do "$rep" "$do_conf" "$kind"
            lock_run "$id" peer "$rep" "$peer_conf" "$kind"
        done
        settle "$id" cycles/s
    done
}


# --- forward: the cost of a call forwarded to the owner --------------------

forward_rows() {
    local cnf out f
    row forward.p50 "store GET forwarded to the owner vs accepted by it,
                     p50, 2 workers"
    row forward.p99 "the same, p99"
    cnf=$(conf 2 "" "do_namespace st store;" \
        "location ~ ^/s/(?<o>\\w+)\$ {
            do_pass st name=\$o;
            add_header X-Owner \$do_owner always;
            add_header X-Worker \$do_worker always;
        }")
    echo "forward: ${label[forward.p50]}"
    ratio_of[forward.p50]=-
    ratio_of[forward.p99]=-
    if ! start_nginx "$cnf" 0-1 > "$dir/start.out" 2>&1; then
        for f in p50 p99; do
            fig[forward.$f.ngx_do]="failed: nginx did not start"
            fig[forward.$f.peer]=-
        done
        return 1
    fi
    put_value
    out=$(taskset -c 1 "$dir/latency" -p "$port" -u "/s/hot?key=k" \
              -n "$requests" 2>&1)
    stop_nginx
    raw forward "" "" "$out"
    if [ -z "$(field forward_p50_us "$out")" ]; then
        for f in p50 p99; do
            fig[forward.$f.ngx_do]="failed: $out"
            fig[forward.$f.peer]=-
        done
        return 1
    fi
    for f in p50 p99; do
        fig[forward.$f.ngx_do]="forwarded: $(field other_${f}_us "$out") us"
        fig[forward.$f.peer]="on the owner: $(field owner_${f}_us "$out") us"
        ratio_of[forward.$f]="+$(field forward_${f}_us "$out") us"
    done
}


# --- the run ------------------------------------------------------------------

echo "bench/limits.sh: $secs s per run, repetitions: $reps, $new_secs s of new" \
     "keys, $keys keys, $requests requests per side; nginx $("$nginx" -v 2>&1 \
     | sed 's/.*\///'), $(nproc) cores"
echo

if wants redis || wants lock; then
    start_redis
fi

wants limit && limit_rows
wants store && store_rows
wants redis && redis_rows
wants newkeys && flood_rows newkeys \
    "do_limit vs limit_req, every key new (\`rate=1r/m\`), 2 workers,
     $new_secs s" \
    "memory per live key after that run (PSS of nginx / keys)" \
    -k 1000000000000 -d "$new_secs"
wants lock && lock_rows
wants forward && forward_rows
wants million && flood_rows million \
    "do_limit vs limit_req, $(k "$keys") new keys each hit once
     (\`rate=1r/m\`), 2 workers" \
    "memory of $(k "$keys") live keys (PSS of nginx; zones $zone and 256m)" \
    -k "$keys"

echo
echo "| case | ngx_do | peer | ratio |"
echo "|---|---|---|---|"
for id in "${rows[@]}"; do
    echo "| ${label[$id]} | ${fig[$id.ngx_do]:-} | ${fig[$id.peer]:-} |" \
         "${ratio_of[$id]:--} |"
done

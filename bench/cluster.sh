#!/bin/bash
# Cluster mode on this machine: 2 and 3 nginx nodes (do_cluster, one
# worker each) on one redis-server, beside as many nginx nodes running the
# Lua + Redis limiter (a GCRA script per request, Debian's lua-nginx-redis)
# on the same Redis, and as many nginx nodes without a gate (the same
# static file: the ceiling of both), then one table: case | ngx_do |
# Lua+Redis | ratio | no gate, and the share of it each side reaches.
# Everything on 127.0.0.1; nodes and redis-server unpinned, the load from
# core 1: one wrk per node at once (CONNS / nodes connections each), the
# req/s summed, the p99 the worst node's.  The limits never reject in the
# throughput runs (rate=1000000r/s burst=1000, a 2-byte static file
# behind); after each run 200 requests spread over the nodes for a fresh
# key limited to 20 (rate=1r/m burst=19) show that the limit is exact
# across nodes ("exact 20/200").  Each case alternates ngx_do and the peer
# REPS times, each on fresh nodes once placement converged, and reports
# the medians.
#
#   limit    1 hot key and 10k random keys, 2 nodes and 3 nodes
#   forward  what a call forwarded between nodes adds, p50 and p99: a
#            store GET on one object, REQUESTS sequential requests on a
#            connection to the owner node (accepted by the owner worker)
#            and on one to another node, interleaved (bench/latency.c -P)
#
#   bench/cluster.sh [--quick] [--secs N] [--reps N] [--requests N]
#                    [--nodes "2 3"] [--only limit,forward]
#
# Defaults: 10 s per run, 3 repetitions, 20000 requests per side for the
# forwarding cost; --quick checks that everything works (1 s runs, one
# repetition, 2000 requests).

secs=10
reps=3
requests=20000
node_counts="2 3"
only=limit,forward

while [ $# -gt 0 ]; do
    case $1 in
    --quick)    secs=1 reps=1 requests=2000 ;;
    --secs)     secs=$2; shift ;;
    --reps)     reps=$2; shift ;;
    --requests) requests=$2; shift ;;
    --nodes)    node_counts=$2; shift ;;
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
printf 'ok' > "$dir/html/ok.txt"

wants() { [[ ",$only," == *",$1,"* ]]; }


# --- nodes -----------------------------------------------------------------

declare -a npid=() hport=() nport=()

stop_nodes() {
    local i
    for i in "${!npid[@]}"; do
        [ -n "${npid[$i]}" ] && kill -QUIT "${npid[$i]}" 2>/dev/null
    done
    for i in "${!npid[@]}"; do
        [ -n "${npid[$i]}" ] && wait "${npid[$i]}" 2>/dev/null
    done
    npid=()
}

# lib.sh's cleanup, with the nodes stopped first
eval "lib_$(declare -f cleanup)"
cleanup() {
    stop_nodes
    lib_cleanup
}

# node_conf SIDE I N: nginx.conf of node I of N (ngx_do, peer, or none:
# the same nginx and file without a gate, the ceiling of both)
node_conf() {
    local side=$1 i=$2 n=$3 d="$dir/n$2"
    if [ "$side" = peer ]; then
        echo "$lua_modules"
    elif [ "$side" = ngx_do ]; then
        echo "load_module $module;"
    fi
    cat <<CONF
worker_processes 1;
error_log $d/logs/error.log error;
pid $d/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    keepalive_requests 1000000;
CONF
    if [ "$side" = none ]; then
        cat <<CONF
    server {
        listen 127.0.0.1:${hport[$i]};
        root $dir/html;
        location / { }
    }
}
CONF
        return
    fi
    if [ "$side" = peer ]; then
        cat <<CONF
    $lua_http
    server {
        listen 127.0.0.1:${hport[$i]};
        root $dir/html;
        location / { $gate_fast }
        location = /exact { $gate_exact alias $dir/html/ok.txt; }
    }
}
CONF
        return
    fi
    cat <<CONF
    do_secret $dir/secret;
    do_storage redis://127.0.0.1:$rport/0;
    do_cluster name=n$i listen=127.0.0.1:${nport[$i]} lease=2s;
    do_namespace dl rate_limiter $fast;
    do_namespace ex rate_limiter rate=1r/m burst=19;
    do_namespace st store;
    server {
        listen 127.0.0.1:${hport[$i]};
        root $dir/html;
        location = /status { do_status; }
        location / { do_limit dl key=\$arg_k; }
        location = /exact { do_limit ex key=\$arg_k; alias $dir/html/ok.txt; }
        location ~ ^/s/(?<o>\\w+)\$ {
            do_pass st name=\$o;
            add_header X-Owner \$do_owner always;
            add_header X-Worker \$do_worker always;
            add_header X-Id \$do_object_id always;
        }
    }
}
CONF
}

# start_nodes SIDE N: N fresh nodes, Redis emptied; for ngx_do, until
# placement converged (every node sees N live nodes, 1024 shards held)
start_nodes() {
    local side=$1 n=$2 i k
    redis-cli -p "$rport" FLUSHALL > /dev/null
    for i in $(seq 0 $((n - 1))); do
        hport[i]=$(free_port)
        nport[i]=$(free_port)
        rm -rf "$dir/n$i"
        mkdir -p "$dir/n$i/logs"
        node_conf "$side" "$i" "$n" > "$dir/n$i/nginx.conf"
        "$nginx" -p "$dir/n$i" -c "$dir/n$i/nginx.conf" -g 'daemon off;' \
            2>> "$dir/n$i/logs/stderr.log" &
        npid[i]=$!
    done
    for i in $(seq 0 $((n - 1))); do
        for k in $(seq 100); do
            curl -s -o /dev/null "http://127.0.0.1:${hport[$i]}/ok.txt" \
                && break
            sleep 0.05
        done
    done
    [ "$side" != ngx_do ] && return 0
    # converged: every shard held, and spread over every node (the first
    # node up holds them all until the others registered, then hands
    # most over: a run that started then would measure the handovers)
    for k in $(seq 200); do
        if [ "$(held_shards "$n")" = 1024 ] \
           && [ "$(least_shards "$n")" -ge $((1024 / n / 2)) ]; then
            # the last handovers end within a lease (2 s)
            sleep 2.5
            return 0
        fi
        sleep 0.1
    done
    echo "placement did not converge: $(held_shards "$n") shards held;" \
         "$(cat "$dir"/n*/logs/stderr.log | tail -3)"
    return 1
}

# held_shards N: the shards the N nodes hold, from their status
held_shards() {
    local i t=0 s
    for i in $(seq 0 $(($1 - 1))); do
        s=$(curl -s "http://127.0.0.1:${hport[$i]}/status" | perl -ne \
            'print $1 if /"cluster":\{.*?"shards":(\d+)/')
        t=$((t + ${s:-0}))
    done
    echo "$t"
}

# least_shards N: the fewest shards one of the N nodes holds
least_shards() {
    local i m=1024 s
    for i in $(seq 0 $(($1 - 1))); do
        s=$(curl -s "http://127.0.0.1:${hport[$i]}/status" | perl -ne \
            'print $1 if /"cluster":\{.*?"shards":(\d+)/')
        [ "${s:-0}" -lt "$m" ] && m=${s:-0}
    done
    echo "$m"
}

# measure_nodes N URL_PATH [WRK_ARGS...]: one wrk per node at once;
# prints "req/s p99_us non-2xx socket-errors"
measure_nodes() {
    local n=$1 path=$2 i c out rps=0 p99=0 bad=0 errs=0 r p b e
    shift 2
    c=$((conns / n))
    for i in $(seq 0 $((n - 1))); do
        taskset -c 1 wrk -t1 -c"$c" -d"${secs}s" --latency "$@" \
            "http://127.0.0.1:${hport[$i]}$path" > "$dir/wrk.$i" 2>&1 &
    done
    wait_wrk
    for i in $(seq 0 $((n - 1))); do
        out=$(cat "$dir/wrk.$i")
        r=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
        [ -z "$r" ] && { echo "- - - -"; return; }
        p=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
        b=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
        e=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {
                                             print $4 + $6 + $8 + $10 }')
        rps=$(awk -v a="$rps" -v b="$r" 'BEGIN { printf "%.2f", a + b }')
        [ "$p" -gt "$p99" ] && p99=$p
        bad=$((bad + ${b:-0}))
        errs=$((errs + ${e:-0}))
    done
    echo "$rps $p99 $bad $errs"
}

# the wrk jobs (not the nodes, which are jobs of this shell too)
wait_wrk() {
    local j
    for j in $(jobs -p); do
        [[ " ${npid[*]} " == *" $j "* ]] || wait "$j"
    done
}

# exact N: of 200 requests spread over the N nodes for a fresh key
# limited to 20, how many passed ("20/200")
exact() {
    local n=$1 key="x$RANDOM$RANDOM" i ok=0
    for i in $(seq 0 199); do
        curl -s -o /dev/null -w '%{http_code}\n' \
            "http://127.0.0.1:${hport[$((i % n))]}/exact?k=$key" &
        [ $((i % 20)) = 19 ] && wait_curls
    done > "$dir/exact.out"
    wait_curls
    ok=$(grep -c '^200$' "$dir/exact.out")
    echo "$ok/200"
}

wait_curls() {
    local j
    for j in $(jobs -p); do
        [[ " ${npid[*]} " == *" $j "* ]] || wait "$j"
    done
}


# --- rows --------------------------------------------------------------------

declare -a rows=()
declare -A label=() vals=() p99s=() fails=()

row() {
    rows+=("$1")
    label[$1]=$2
}

raw() {
    printf "  %-14s %-6s %-3s %s\n" "$1" "$2" "${3:+#$3}" "$4"
}

# k: 51234 -> 51.2k
k() {
    awk -v v="$1" 'BEGIN {
        if (v >= 1e6) printf "%.2fM", v / 1e6
        else if (v >= 1e4) printf "%.1fk", v / 1e3
        else if (v >= 1e3) printf "%.2fk", v / 1e3
        else printf "%.0f", v }'
}

us() {
    awk -v v="$1" 'BEGIN {
        if (v >= 1000) printf "%.2f ms", v / 1000; else printf "%.0f us", v }'
}

# cluster_runs SIDE N REP: both key cases on one set of fresh nodes
cluster_runs() {
    local side=$1 n=$2 rep=$3 key r p b e ex id args
    if ! start_nodes "$side" "$n" > "$dir/start.out" 2>&1; then
        for key in hot 10k; do
            fails[limit.$key.$n.$side]=$(head -c 200 "$dir/start.out")
            raw "limit.$key.$n" "$side" "$rep" \
                "failed: ${fails[limit.$key.$n.$side]}"
        done
        stop_nodes
        return 1
    fi
    for key in hot 10k; do
        id=limit.$key.$n
        if [ "$key" = hot ]; then
            args=("/ok.txt?k=hot")
        else
            args=("/" -s "$dir/keys.lua")
        fi
        read -r r p b e < <(measure_nodes "$n" "${args[@]}")
        ex=-
        [ "$side" != none ] && ex=$(exact "$n")
        if [ "$r" = - ]; then
            fails[$id.$side]="wrk measured nothing"
            raw "$id" "$side" "$rep" "failed: wrk measured nothing"
            continue
        fi
        raw "$id" "$side" "$rep" "$(printf \
            "%9s req/s  p99 %-9s  non-2xx %s  socket errors %s  exact %s" \
            "$r" "$(us "$p")" "$b" "$e" "$ex")"
        vals[$id.$side]+=" $r"
        p99s[$id.$side]+=" $p"
        label[$id.$side.exact]=$ex
    done
    stop_nodes
}

limit_rows() {
    local n rep key
    gate_fast=$(lua_gcra 1000000 1000)
    mv "$dir/gcra.lua" "$dir/gcra-fast.lua"
    gate_fast=${gate_fast//gcra.lua/gcra-fast.lua}
    gate_exact=$(lua_gcra 0.0166667 19)
    for n in $node_counts; do
        for key in hot 10k; do
            if [ "$key" = hot ]; then
                row "limit.$key.$n" "$n nodes, 1 hot key"
            else
                row "limit.$key.$n" "$n nodes, 10k keys"
            fi
        done
        echo "limit: do_limit (do_cluster, exact) vs Lua+Redis, $n nodes"
        for rep in $(seq "$reps"); do
            cluster_runs ngx_do "$n" "$rep"
            cluster_runs peer "$n" "$rep"
            cluster_runs none "$n" "$rep"
        done
    done
}

# a store object whose shard node 0 holds: "NAME" (none: empty)
owned_object() {
    perl -MJSON::PP -e '
        my ($p0) = @ARGV;
        my $st = decode_json(`curl -s http://127.0.0.1:$p0/status`);
        my $e = $st->{cluster}{epochs} || {};
        for my $k (1 .. 500) {
            my $h = `curl -s -o /dev/null -D - http://127.0.0.1:$p0/s/o$k?key=k`;
            my ($id) = $h =~ /^X-Id: ([0-9a-f]{8})/mi or next;
            if (exists $e->{ hex($id) % 1024 }) { print "o$k"; exit }
        }' "${hport[0]}"
}

forward_rows() {
    local n o out
    for n in $node_counts; do
        row "forward.p50.$n" "forwarded store GET, $n nodes, p50 added"
        row "forward.p99.$n" "the same, p99 added"
        echo "forward: a store GET through another node vs the owner," \
             "$n nodes"
        if ! start_nodes ngx_do "$n" > "$dir/start.out" 2>&1; then
            fails[forward.p50.$n.ngx_do]=$(head -c 200 "$dir/start.out")
            stop_nodes
            continue
        fi
        o=$(owned_object)
        if [ -z "$o" ]; then
            fails[forward.p50.$n.ngx_do]="no object of node 1's shards found"
            stop_nodes
            continue
        fi
        curl -s -o /dev/null -X PUT \
            "http://127.0.0.1:${hport[0]}/s/$o?key=k" -d value
        out=$(taskset -c 1 "$dir/latency" -p "${hport[0]}" -P "${hport[1]}" \
                  -u "/s/$o?key=k" -n "$requests" 2>&1)
        stop_nodes
        raw "forward.$n" "" "" "$out"
        if ! echo "$out" | grep -q forward_p50_us=; then
            fails[forward.p50.$n.ngx_do]=$out
            continue
        fi
        vals[forward.p50.$n.ngx_do]=$(field forward_p50_us "$out")
        vals[forward.p99.$n.ngx_do]=$(field forward_p99_us "$out")
        label[forward.p50.$n.detail]="owner $(field owner_p50_us "$out") us,"
        label[forward.p50.$n.detail]+=" other node $(field other_p50_us "$out") us"
        label[forward.p99.$n.detail]="owner $(field owner_p99_us "$out") us,"
        label[forward.p99.$n.detail]+=" other node $(field other_p99_us "$out") us"
    done
}

# field NAME LINE: the value of NAME= in a latency result line
field() {
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -1
}


# --- the run -------------------------------------------------------------------

start_redis
echo "nodes: one worker each, unpinned; redis-server unpinned; wrk on core 1;" \
     "$secs s runs, $reps repetitions"
wants limit && limit_rows
wants forward && forward_rows

# share A C: A as a percentage of C
share() {
    awk -v a="$1" -v c="$2" 'BEGIN { printf "%.0f%%", 100 * a / c }'
}

# side ID SIDE: "51.2k req/s, p99 1.25 ms, exact 20/200" from the medians
side() {
    local v p
    # shellcheck disable=SC2086
    v=$(median ${vals[$1.$2]:-})
    [ -z "$v" ] && { echo "failed: ${fails[$1.$2]:-no run}"; return; }
    # shellcheck disable=SC2086
    p=$(median ${p99s[$1.$2]:-})
    echo "$(k "$v") req/s, p99 $(us "$p"), exact ${label[$1.$2.exact]}"
}

echo
printf '| %s | %s | %s | %s | %s |\n' case ngx_do Lua+Redis "ratio (req/s)" \
    "no gate: req/s (ngx_do, Lua+Redis: their share)"
printf '|---|---|---|---|---|\n'
for id in "${rows[@]}"; do
    if [[ $id == forward.* ]]; then
        if [ -n "${vals[$id.ngx_do]:-}" ]; then
            printf '| %s | %s | %s | - | - |\n' "${label[$id]}" \
                "$(us "${vals[$id.ngx_do]}")" "(${label[$id.detail]})"
        else
            printf '| %s | failed: %s | - | - | - |\n' "${label[$id]}" \
                "$(echo "${fails[$id.ngx_do]:-no run}" | tr '\n|' '  ' \
                   | head -c 160)"
        fi
        continue
    fi
    # shellcheck disable=SC2086
    d=$(median ${vals[$id.ngx_do]:-})
    # shellcheck disable=SC2086
    p=$(median ${vals[$id.peer]:-})
    # shellcheck disable=SC2086
    c=$(median ${vals[$id.none]:-})
    r=-
    [ -n "$d" ] && [ -n "$p" ] && r=$(ratio "$d" "$p")
    ceil=-
    [ -n "$c" ] && [ -n "$d" ] && [ -n "$p" ] \
        && ceil="$(k "$c") req/s ($(share "$d" "$c"), $(share "$p" "$c"))"
    printf '| %s | %s | %s | %s | %s |\n' "${label[$id]}" \
        "$(side "$id" ngx_do | tr -d '\n' | tr '|' ' ' | head -c 160)" \
        "$(side "$id" peer | tr -d '\n' | tr '|' ' ' | head -c 160)" "$r" \
        "$ceil"
done

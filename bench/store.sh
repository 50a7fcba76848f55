#!/bin/bash
# store GET and incr throughput beside a plain `return 200`, with 1 and 4
# workers, measured with wrk in one run on this machine.  Prints req/s, p99
# and the ratio of each store location to `return 200` with the same
# workers.
#
#   bench/store.sh [seconds per run, default 5] [connections, default 32]

secs=${1:-5}
conns=${2:-32}
. "$(dirname "$0")/lib.sh"

conf() {
    conf_head "$1" warn
    cat <<CONF
    do_namespace bench store;
    server {
        listen 127.0.0.1:$port reuseport;
        root $dir/html;
        location = /plain { return 200 "ok"; }
        location ~ ^/s/(?<o>\w+)\$ { do_pass bench name=\$o; }
    }
}
CONF
}

printf "%-8s %-22s %12s %10s %8s\n" workers location "req/s" p99 ratio
for workers in 1 4; do
    start_nginx "$(conf "$workers")"
    curl -s -o /dev/null -X PUT "http://127.0.0.1:$port/s/hot?key=k" -d value
    read -r base base_p99 _ _ < <(measure "http://127.0.0.1:$port/plain")
    printf "%-8s %-22s %12s %10s %8s\n" "$workers" "return 200" "$base" \
        "$base_p99" 1.00
    read -r get get_p99 _ _ < <(measure "http://127.0.0.1:$port/s/hot?key=k")
    printf "%-8s %-22s %12s %10s %8s\n" "$workers" "store GET (1 object)" \
        "$get" "$get_p99" "$(ratio "$get" "$base")"
    read -r inc inc_p99 _ _ < <(measure -s "$dir/incr.lua" \
        "http://127.0.0.1:$port/s/hot?key=n&op=incr")
    printf "%-8s %-22s %12s %10s %8s\n" "$workers" "store incr (1 object)" \
        "$inc" "$inc_p99" "$(ratio "$inc" "$base")"
    echo "         (the object counted" \
         "$(curl -s "http://127.0.0.1:$port/s/hot?key=n") increments)"
    stop_nginx
done

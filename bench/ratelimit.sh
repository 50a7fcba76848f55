#!/bin/bash
# Rate limiting throughput, side by side in one run on this machine:
#   no gate | nginx limit_req | do_limit (memory storage)
# for one hot key and for 10k keys, with 1 worker and with 2 workers.
# nginx is pinned to core 0 and wrk to core 1.  Prints req/s, p99 and the
# ratio to limit_req.  Both limiters: rate=100r/s burst=50 nodelay, in front
# of a small static file (a `return` would run before the access phase).
#
#   bench/ratelimit.sh [seconds per run, default 5] [connections, default 64]

secs=${1:-5}
conns=${2:-64}
. "$(dirname "$0")/lib.sh"

conf() {
    conf_head "$1"
    cat <<CONF
    limit_req_zone \$arg_k zone=lr:64m rate=100r/s;
    limit_req_log_level info;
    do_storage memory size=64m;
    do_namespace dl rate_limiter rate=100r/s burst=50;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location / { $2 }
    }
}
CONF
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
        base=
        for gate in none limit_req do_limit; do
            start_nginx "$(conf "$workers" "${gates[$gate]}")"
            if [ "$keys" = 1 ]; then
                read -r r p b _ < <(measure "http://127.0.0.1:$port/ok.txt?k=hot")
            else
                read -r r p b _ < <(measure -s "$dir/keys.lua" "http://127.0.0.1:$port/")
            fi
            stop_nginx
            ratio=-
            [ "$gate" = limit_req ] && base=$r
            [ "$gate" != none ] && ratio=$(ratio "$r" "$base")
            printf "%-8s %-10s %-10s %12s %10s %10s %8s\n" \
                "$workers" "$keys" "$gate" "$r" "$p" "$b" "$ratio"
        done
    done
done

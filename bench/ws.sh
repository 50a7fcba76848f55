#!/bin/bash
# WebSocket chat rooms, side by side in one run:
#   ngx_do's room class (2 workers, memory storage, history=100,
#   presence=off: nchan and the relay send no join or leave events);
#   nchan (Debian's libnginx-mod-nchan, 2 workers, nchan_pubsub with one
#   channel per room, messages published over the subscribers' own
#   websockets, nchan_message_buffer_length 100);
#   a plain Node.js relay on the npm "ws" package (one process: a text
#   message goes to every client in its room, the sender too).
# Servers run on core 0, the load tool (bench/ws-load.c, built here) on
# core 1.  For each size (100, 1000, 10000 members in one room) it opens
# the members, waits until the room is quiet, then 10 of them send
# closed-loop for the given seconds (after a 1 s warm-up): deliveries/s,
# p50/p99 delivery latency, lost and duplicated deliveries (every one
# counted), members closed by the server.  Memory per idle connection is
# the server's PSS (master and workers, or node) with the members
# connected and idle, less before, over N, at the largest size.
#
#   bench/ws.sh [seconds per run, default 10]
#
# WS_SIZES="100 1000" picks other sizes.  Installs what is missing (nchan
# from Debian; ws from npm into the run's temporary directory, never
# into the tree).  Everything goes to 127.0.0.1 and stops by itself.

secs=${1:-10}
sizes=${WS_SIZES:-100 1000 10000}
senders=10
top_size=$(echo $sizes | tr ' ' '\n' | sort -n | tail -1)
. "$(dirname "$0")/lib.sh"

# as the Makefile does: Debian packages, apt-get update once
missing=""
dpkg-query -W -f='${Status}' libnginx-mod-nchan 2>/dev/null \
    | grep -q "ok installed" || missing="$missing libnginx-mod-nchan"
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        $missing > "$dir/logs/apt.log" 2>&1 \
        || { cat "$dir/logs/apt.log"; exit 1; }
fi
nchan=/usr/lib/nginx/modules/ngx_nchan_module.so

# each process (the load tool, node, an nginx worker) holds at most
# one socket per member
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
if [ "$nofile" -lt $((top_size + 100)) ]; then
    echo "ulimit -n is $nofile: too few open files for $sizes members"
    exit 1
fi

gcc -O2 -Wall -Wextra -o "$dir/ws-load" "$top/bench/ws-load.c"

mkdir -p "$dir/node"
(cd "$dir/node" && timeout 300 npm install --silent --no-audit --no-fund \
    --no-package-lock ws > "$dir/logs/npm.log" 2>&1) \
    || { echo "npm install ws failed:"; cat "$dir/logs/npm.log"; exit 1; }

cat > "$dir/node/relay.js" <<'JS'
// A chat relay: every text message goes to all clients of its room.
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const rooms = new Map();
const server = http.createServer((req, res) => res.end('ok\n'));
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
    const m = /^\/rooms\/([\w-]+)/.exec(req.url);
    if (!m) {
        socket.destroy();
        return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
        let room = rooms.get(m[1]);
        if (!room) {
            room = new Set();
            rooms.set(m[1], room);
        }
        room.add(ws);
        ws.on('message', (data, isBinary) => {
            for (const c of room) {
                if (c.readyState === WebSocket.OPEN) {
                    c.send(data, { binary: isBinary });
                }
            }
        });
        ws.on('close', () => room.delete(ws));
        ws.on('error', () => {});
    });
});

server.listen({ port: +process.argv[2], host: '127.0.0.1', backlog: 4096 });
JS

npid=
cleanup_ws() {
    [ -n "$npid" ] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null
    cleanup
}
trap cleanup_ws EXIT

# the part of nginx.conf both nginx servers share; $1: load_module line
ws_head() {
    cat <<CONF
$1
worker_processes 2;
worker_rlimit_nofile $nofile;
error_log $dir/logs/error.log error;
pid $dir/logs/nginx.pid;
events { worker_connections $((nofile - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/body;
CONF
}

conf_do() {
    ws_head "load_module $module;"
    cat <<CONF
    do_secret $dir/secret;
    do_namespace rooms room history=100 max_members=0 presence=off;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $dir/html;
        location ~ ^/rooms/(?<room>[\w-]+)\$ {
            do_pass rooms name=\$room member=\$arg_member;
        }
    }
}
CONF
}

conf_nchan() {
    ws_head "load_module $nchan;"
    cat <<CONF
    nchan_message_buffer_length 100;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $dir/html;
        location ~ ^/rooms/([\w-]+)\$ {
            nchan_pubsub;
            nchan_channel_id \$1;
        }
    }
}
CONF
}

start_node() {
    taskset -c 0 node "$dir/node/relay.js" "$port" \
        > "$dir/logs/node.log" 2>&1 &
    npid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return
        sleep 0.05
    done
    echo "node did not start:"; cat "$dir/logs/node.log"; exit 1
}

stop_node() {
    kill "$npid"
    wait "$npid" 2>/dev/null || true
    npid=
}

# load SERVER_PID MEMBERS MODE: one ws-load run on core 1, its result line
load() {
    local mem=
    [ "$2" = "$top_size" ] && mem="-P $1"
    timeout 900 taskset -c 1 "$dir/ws-load" -p "$port" -u /rooms/bench \
        -n "$2" -s "$senders" -d "$secs" -w 1 -m "$3" $mem \
        2>>"$dir/logs/load.log" || echo "failed=1"
}

declare -A res=()

# run SERVER MEMBERS: a fresh server for each run
run() {
    local server=$1 n=$2
    case $server in
    ngx_do)
        start_nginx "$(conf_do)"
        res[$server,$n]=$(load "$pid" "$n" json)
        stop_nginx ;;
    nchan)
        start_nginx "$(conf_nchan)"
        res[$server,$n]=$(load "$pid" "$n" raw)
        stop_nginx ;;
    node)
        start_node
        res[$server,$n]=$(load "$npid" "$n" raw)
        stop_node ;;
    esac
}

# field NAME LINE: the value of NAME= in a ws-load result line
field() {
    echo "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'
}

for n in $sizes; do
    for server in ngx_do nchan node; do
        run "$server" "$n"
    done
done

fmt="%-7s %7s %12s %8s %8s %8s %5s %6s %7s %9s %8s\n"
printf "\n$fmt" server members deliveries/s "p50 ms" "p99 ms" lost dups \
    closed "x nchan" "p99/nchan" "load CPU"
for n in $sizes; do
    c=${res[nchan,$n]}
    for server in ngx_do nchan node; do
        r=${res[$server,$n]}
        if [ -z "$(field rate "$r")" ]; then
            printf "%-7s %7s  (failed: see the load log)\n" "$server" "$n"
            continue
        fi
        printf "$fmt" "$server" "$n" "$(field rate "$r")" \
            "$(field p50_ms "$r")" "$(field p99_ms "$r")" \
            "$(field lost "$r")" "$(field dups "$r")" "$(field closed "$r")" \
            "$(ratio "$(field rate "$r")" "$(field rate "$c")" 2>/dev/null)" \
            "$(ratio "$(field p99_ms "$r")" "$(field p99_ms "$c")" \
               2>/dev/null)" "$(field load_cpu "$r")"
    done
done

echo
echo "memory per idle connection, $top_size members connected" \
     "(PSS delta / N):"
for server in ngx_do nchan node; do
    r=${res[$server,$top_size]}
    awk -v s="$server" -v n="$(field connected "$r")" \
        -v a="$(field pss0_kb "$r")" -v b="$(field pss1_kb "$r")" 'BEGIN {
            if (n > 0)
                printf "%-7s %6d conns  PSS %7.1f -> %7.1f MiB  %6.2f KiB\n",
                       s, n, a / 1024, b / 1024, (b - a) / n
        }'
done

# WS_VERBOSE=1: every run's result line, with messages sent and events
if [ -n "${WS_VERBOSE:-}" ]; then
    echo
    for k in "${!res[@]}"; do echo "$k: ${res[$k]}"; done
fi

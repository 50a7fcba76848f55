#!/bin/bash
# Many alarms: store keys with a TTL, one per object, written for a few
# seconds into as many objects (about 100 000 here), that
# are then evicted (do_idle_timeout 5s), so that every alarm must be found
# in the shard index and its object activated to run it.  Prints how fast
# the keys were written, the workers' CPU while N alarms wait (one timer
# per worker, no scanning: it should be ~0), and how late the alarms ran.
# 2 nginx workers pinned to core 0, wrk on core 1; load goes to 127.0.0.1
# only and every run stops by itself.
#
#   bench/alarms.sh [seconds of writing, default 5] [ttl seconds, default 30]

secs=${1:-5}
ttl=${2:-30}
conns=16
. "$(dirname "$0")/lib.sh"

start_nginx "$(conf_head 2 warn)
    do_storage memory size=512m;
    do_idle_timeout 5s;
    do_namespace st store;
    server {
        listen 127.0.0.1:$port;
        root $dir/html;
        location ~ ^/s/(?<o>\w+)\$ { do_pass st name=\$o; }
        location = /status { do_status; }
    }
}"

status() {
    curl -s "http://127.0.0.1:$port/status" | perl -MJSON::PP -e '
        my $s = decode_json(join "", <STDIN>);
        my ($f, $o) = (0, 0);
        for (@{ $s->{workers} }) { $f += $_->{alarms_fired}; $o += $_->{objects} }
        print "$f $o $s->{storage}{free}\n"'
}

# the workers' CPU time so far, in clock ticks
cpu() {
    local t=0 p
    for p in $(pgrep -P "$pid"); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}

cat "$dir/threads.lua" - > "$dir/ttl.lua" <<LUA
local n = 0
request = function()
    n = n + 1
    return wrk.format("PUT", "/s/o" .. id .. "x" .. n .. "?key=k&ttl=${ttl}s",
                      nil, "x")
end
LUA

read -r _ _ free0 < <(status)
t0=$(date +%s.%N)
out=$(taskset -c 1 wrk -t"$conns" -c"$conns" -d"${secs}s" -s "$dir/ttl.lua" \
          "http://127.0.0.1:$port/")
t1=$(date +%s.%N)
rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
written=$(echo "$out" | awk '/requests in/ { print $1 }')
echo "wrote $written keys with ttl=${ttl}s in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s ($rps req/s, ${bad:-0} non-2xx)"

sleep 7    # idle objects are evicted
read -r fired objects _ < <(status)
c0=$(cpu)
sleep 10
c1=$(cpu)
echo "while $written alarms wait: $objects objects in memory, workers used $((c1 - c0)) ticks of CPU in 10 s ($(getconf CLK_TCK) ticks = 1 s)"

# first due: t0 + ttl; last due: t1 + ttl
now=$(date +%s.%N)
wait_s=$(awk -v a="$t0" -v t="$ttl" -v n="$now" 'BEGIN { w = a + t - n; print (w > 0 ? w : 0) }')
sleep "$wait_s"
last=
while :; do
    read -r fired objects free < <(status)
    [ "$fired" -ge "$written" ] && break
    now=$(date +%s.%N)
    if awk -v n="$now" -v b="$t1" -v t="$ttl" 'BEGIN { exit !(n > b + t + 60) }'; then
        echo "only $fired of $written alarms fired within 60 s of the last due time"
        exit 1
    fi
    sleep 0.2
done
done_at=$(date +%s.%N)
echo "all $fired alarms ran; the last $(awk -v d="$done_at" -v b="$t1" -v t="$ttl" 'BEGIN { printf "%.2f", d - (b + t) }') s after the last was due"
echo "storage free: $free0 bytes before, $free after (the keys are gone)"

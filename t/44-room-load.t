# 1000 WebSocket members in one room over 4 workers, 10 of them sending:
# every member receives every message exactly once, numbered without a
# gap, in the same order as every other member.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use Test::More;
use DoTest qw(http);
use DoWs;

my $MEMBERS = 1000;
my $SENDERS = 10;
my $EACH = 10;

my $t = DoTest->new(workers => 4, http => <<'EOF')->start;
    %%STORAGE%%
    do_call_timeout 30s;
    do_namespace rooms room history=1000 max_members=2000;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            do_ws_send_queue 1m;
            do_pass rooms name=$room member=$arg_member;
        }
        location = /status { do_status; }
    }
EOF
my $p = $t->port;

my @ws;
for my $i (1 .. $MEMBERS) {
    my $ws = DoWs->connect($p, "/rooms/crowd?member=m$i", timeout => 30);
    last unless ref $ws eq 'DoWs';
    push @ws, $ws;
}
is(scalar @ws, $MEMBERS, "$MEMBERS members joined");

my $sel = IO::Select->new(map { $_->sock } @ws);
my %by_fd = map { fileno($_->sock) => $_ } @ws;

# the numbered messages each member got, in the order it got them
my %seqs;
my %texts;

sub pump {
    my ($secs) = @_;
    for my $s ($sel->can_read($secs)) {
        my $ws = $by_fd{ fileno $s };
        my $n = sysread($s, $ws->{buf}, 1 << 20, length $ws->{buf});
        if (!$n) {
            $sel->remove($s);
            next;
        }
        while (my $f = DoWs::_parse($ws)) {
            next unless $f->{op} == 1
                && $f->{payload} =~ /^\{"type":"message","seq":(\d+),/;
            my $seq = $1;
            my ($data) = $f->{payload} =~ /"data":"([^"]*)"/;
            push @{ $seqs{ fileno $s } }, $seq;
            $texts{$seq} //= $data;
        }
    }
}

my @senders = @ws[map { $_ * int($MEMBERS / $SENDERS) } 0 .. $SENDERS - 1];
for my $round (1 .. $EACH) {
    for my $k (0 .. $#senders) {
        $senders[$k]->send_text("s$k r$round");
    }
    pump(0.05);
}

my $total = $SENDERS * $EACH;
my $deadline = time + 120;
while (time < $deadline) {
    pump(0.5);
    last unless grep { @{ $seqs{ fileno $_->sock } || [] } < $total } @ws;
}

my ($short, $gaps, $orders) = (0, 0, {});
for my $ws (@ws) {
    my $got = $seqs{ fileno $ws->sock } || [];
    $short++ if @$got != $total;
    $gaps++ if join(',', @$got) ne join(',', 1 .. $total);
    $orders->{ join ',', @$got }++;
}
is($short, 0, "every member got all $total messages, none twice");
is($gaps, 0, "... numbered 1 to $total in order, no gap");
is(scalar keys %$orders, 1, '... the same sequence for everyone');
my %from;
$from{ (split / /, $texts{$_} // '')[0] // '' }++ for 1 .. $total;
is(join(' ', map { $from{"s$_"} // 0 } 0 .. $SENDERS - 1),
   join(' ', ($EACH) x $SENDERS), "each sender's $EACH messages are there");

my $j = http($p, 'GET', '/rooms/crowd')->{body};
like($j, qr/"count":$MEMBERS\b/, "the room counts $MEMBERS members");
undef @ws;

$t->check_logs;
done_testing;

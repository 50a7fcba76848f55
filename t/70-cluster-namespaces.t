# Cluster mode needs the same do_namespace lines, in the same order, on
# every node (a call names its namespace by its index).  Two nodes whose
# lines differ in order: each logs an error naming the other and leaves
# it out of its placement (not live among its peers), rather than send it
# calls that would reach the wrong namespace.  A node with the same lines
# joins as usual.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http wait_for);

my $J = JSON::PP->new;
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

sub node {
    my ($name, $namespaces) = @_;
    my $t = DoTest->new(workers => 1, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_cluster name=$name listen=127.0.0.1:%%PORT2%% lease=2s;
$namespaces
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { do_status; }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "one secret for every node of this test\n";
    close $fh;
    return $t->start;
}

sub peer {
    my ($t, $name) = @_;
    my $s = eval { $J->decode(http($t->port, 'GET', '/status')->{body}) }
        || {};
    my ($p) = grep { $_->{name} eq $name } @{ $s->{cluster}{peers} || [] };
    return $p || {};
}

my $ab = "    do_namespace a store;\n    do_namespace b store;\n";
my $ba = "    do_namespace b store;\n    do_namespace a store;\n";

my $n1 = node('n1', $ab);
my $n2 = node('n2', $ba);
my $n3 = node('n3', $ab);

ok(wait_for(sub { peer($n1, 'n3')->{live} && peer($n3, 'n1')->{live} }, 15),
   'two nodes with the same lines see each other live');
ok(wait_for(sub { $n1->error_log =~ /node "n2" has other do_namespace lines/ },
            15), 'a node with other lines is named in the error log');
ok(!peer($n1, 'n2')->{live} && !peer($n3, 'n2')->{live},
   '... and left out of the others\' placement');
ok(wait_for(sub { $n2->error_log =~ /node "n1" has other do_namespace lines/ },
            15), 'the odd node says the same of the others');

$_->check_logs($_ == $n2 ? 'n2' : 'n1/n3',
               expect => [qr/has other do_namespace lines/])
    for $n1, $n2, $n3;
done_testing;

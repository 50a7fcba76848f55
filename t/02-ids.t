# Object IDs: name= is deterministic (and stable across a full restart with
# do_secret), id= rejects malformed and foreign IDs with 400 before any
# storage work, unique mints fresh IDs.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DoTest qw(http);

my $t = DoTest->new(workers => 2, http => <<'EOF');
    do_secret %%PREFIX%%/do.secret;
    do_namespace state store;
    do_namespace other store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/n/(?<o>.+)$   { do_pass state name=$o;
                                     add_header X-Id $do_object_id; }
        location = /id             { do_pass state id=$arg_id; }
        location = /other          { do_pass other id=$arg_id; }
        location = /other-name     { do_pass other name=$arg_name; }
        location = /pair           { do_pass state name=$arg_a-$arg_b; }
        location = /new            { do_pass state unique; }
    }
EOF

open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh "correct horse battery staple 0123456789\n";
close $fh;
$t->start;
my $p = $t->port;

my $a1 = http($p, 'PUT', '/n/alpha?key=k', body => 'A');
my $a2 = http($p, 'GET', '/n/alpha?key=k');
my $id = $a1->{headers}{'do-object-id'};
like($id, qr/^[0-9a-f]{64}$/, 'an ID is 64 lowercase hex');
is($a2->{headers}{'do-object-id'}, $id, 'the same name gives the same ID');
is($a1->{headers}{'x-id'}, $id, '$do_object_id holds the ID');
my $beta = http($p, 'GET', '/n/beta?key=k')->{headers}{'do-object-id'};
like($beta // '', qr/^[0-9a-f]{64}$/, 'another name has an ID too');
isnt($beta, $id, 'another name gives another ID');

my $empty = http($p, 'GET', '/other-name?name=');
is($empty->{status}, 400, 'an empty name is 400');
like($empty->{body}, qr/invalid object name/, '... saying so');

my $unset = http($p, 'GET', '/other-name?key=k');
is($unset->{status}, 400, 'a name variable that is not set is 400');

is(http($p, 'GET', '/pair?a=x&b=y&key=k')->{headers}{'do-object-id'} // '',
   http($p, 'GET', '/n/x-y?key=k')->{headers}{'do-object-id'},
   'a name of several variables is the name they spell');

my $o = http($p, 'GET', '/other-name?name=alpha');
like($o->{headers}{'do-object-id'} // '', qr/^[0-9a-f]{64}$/,
     'the same name in another namespace has an ID');
isnt($o->{headers}{'do-object-id'}, $id,
     'the same name in another namespace gives another ID');

is(http($p, 'GET', "/id?id=$id&key=k")->{body}, 'A',
   'id= reaches the object that name= made');

my $flip = substr($id, 0, 63) . (substr($id, 63) eq 'a' ? 'b' : 'a');
for my $bad ('', 'xyz', substr($id, 0, 63), $id . '0', uc($id), '0' x 64,
             $flip)
{
    my $r = http($p, 'GET', "/id?id=$bad&key=k");
    is($r->{status}, 400, "malformed or forged id '" . substr($bad, 0, 12)
       . "...' is 400");
    like($r->{body}, qr/invalid object id/, '... with a clear message');
}

my $r = http($p, 'GET', "/other?id=$id&key=k");
is($r->{status}, 400, 'an ID of another namespace is 400');

my $u1 = http($p, 'PUT', '/new?key=k', body => 'U');
my $u2 = http($p, 'PUT', '/new?key=k', body => 'V');
my $uid = $u1->{headers}{'do-object-id'};
like($uid, qr/^[0-9a-f]{64}$/, 'unique returns the new ID in DO-Object-Id');
like($u2->{headers}{'do-object-id'} // '', qr/^[0-9a-f]{64}$/,
     'the second unique object has an ID');
isnt($u2->{headers}{'do-object-id'}, $uid, 'unique never repeats');
is(http($p, 'GET', "/id?id=$uid&key=k")->{body}, 'U',
   'a unique ID is accepted by id=');

my $long = 'x' x 2000;
is(http($p, 'GET', "/n/$long?key=k")->{status}, 400,
   'a name over 1024 bytes is 400');

# each worker keeps the IDs of the names it met last, 256 of them, in
# slots chosen by a hash: more names than slots, names that prefix each
# other, the longest name kept and the shortest one not, each in two
# namespaces
my @names = ((map { "n$_" } 1 .. 600), 'ab', 'abc', 'x' x 63, 'x' x 64,
             ('x' x 62) . 'y', 'x' x 1024);
my (%first, %seen);
for my $n (@names) {
    $first{"state $n"} = http($p, 'GET', "/n/$n?key=k")->{headers}
                         {'do-object-id'} // '';
    $first{"other $n"} = http($p, 'GET', "/other-name?name=$n&key=k")
                         ->{headers}{'do-object-id'} // '';
}
$seen{$_}++ for values %first;
is(scalar(grep { /^[0-9a-f]{64}$/ } values %first), 2 * @names,
   'every name has an ID in both namespaces');
is(scalar(keys %seen), 2 * @names,
   'no two names, nor one name in two namespaces, share an ID');

# a full stop loses memory storage but not the ID a name maps to
$t->stop;
$t->start;
is(http($p, 'GET', '/n/alpha?key=k')->{headers}{'do-object-id'}, $id,
   'name= gives the same ID after a full restart with do_secret');
is(http($p, 'GET', "/id?id=$uid&key=k")->{status}, 404,
   'a unique ID stays valid after a restart (its memory data is gone)');

# workers that met no name yet, the names in the other order
my $same = 0;
for my $n (reverse @names) {
    $same++ if (http($p, 'GET', "/n/$n?key=k")->{headers}{'do-object-id'}
                // '') eq $first{"state $n"};
    $same++ if (http($p, 'GET', "/other-name?name=$n&key=k")->{headers}
                {'do-object-id'} // '') eq $first{"other $n"};
}
is($same, 2 * @names,
   'each name maps to the ID it had, whichever names came before it');

$t->stop;
$t->check_logs;

done_testing();

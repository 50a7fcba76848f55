# Writes the seed corpus of the WebSocket fuzzers into fuzz/corpus/; the
# files are committed, this script says how they were made.
#
#   perl fuzz/make-corpus.pl
#
# ws_frame_fuzz inputs: a configuration byte (bit 0: masks required, bits
# 1-3: max_message index), a split count, the split sizes, the stream.
# ws_handshake_fuzz inputs: header values one per line, then 'o' origins
# and 'p' subprotocols.

use strict;
use warnings;
use File::Path qw(make_path);
use FindBin;

my $dir = "$FindBin::Bin/corpus";
my @key = (0x37, 0xfa, 0x21, 0x3d);

sub frame {
    my ($first, $payload, %o) = @_;
    my $len = length $payload;
    my $m = $o{unmasked} ? 0 : 0x80;
    my $f = pack('C', $first);

    if ($len < 126) {
        $f .= pack('C', $m | $len);
    } elsif ($len <= 0xffff) {
        $f .= pack('Cn', $m | 126, $len);
    } else {
        $f .= pack('CNN', $m | 127, 0, $len);
    }

    return $f . $payload if $o{unmasked};

    my $i = 0;
    return $f . pack('C4', @key)
        . join('', map { chr(ord($_) ^ $key[$i++ % 4]) } split //, $payload);
}

# config byte: masks required, max_message index
sub conf { my ($mask, $max, @splits) = @_;
           pack('CC', ($mask ? 1 : 0) | ($max << 1), scalar @splits)
           . pack('C*', @splits) }

sub write_file {
    my ($target, $name, $bytes) = @_;
    make_path("$dir/$target");
    open(my $fh, '>:raw', "$dir/$target/$name") or die "$name: $!";
    print $fh $bytes;
    close $fh;
}

my %frames = (
    'text-hello'         => conf(1, 0) . frame(0x81, 'Hello'),
    'rfc-unmasked-hello' => conf(0, 0) . "\x81\x05Hello",
    'byte-at-a-time'     => conf(1, 0, 1) . frame(0x81, "caf\xc3\xa9"),
    'fragments-and-ping' => conf(1, 4, 3, 5)
                            . frame(0x01, "Hel\xc3") . frame(0x89, 'ping')
                            . frame(0x00, "\xa9l") . frame(0x80, 'o'),
    'binary-16bit'       => conf(1, 5) . frame(0x82, 'x' x 300),
    'close-bye'          => conf(1, 0)
                            . frame(0x88, "\x03\xe8bye"),
    'close-empty'        => conf(1, 0) . frame(0x88, ''),
    'pong-then-close'    => conf(1, 2, 2) . frame(0x8a, 'p')
                            . frame(0x88, "\x03\xe9going"),
    'over-max'           => conf(1, 2) . frame(0x81, 'y' x 200),
    'bad-utf8-split'     => conf(1, 0) . frame(0x01, "ok\xed")
                            . frame(0x80, "\xa0\x80"),
    'rsv-bit'            => conf(1, 0) . frame(0xc1, 'a'),
);

write_file('ws_frame_fuzz', $_, $frames{$_}) for keys %frames;

my $key = 'dGhlIHNhbXBsZSBub25jZQ==';
my %handshakes = (
    'browser'     => "websocket\nUpgrade\n13\n$key\nhttps://chat.example.com"
                     . "\nchat.v1, chat.v2\nohttps://chat.example.com"
                     . "\npchat.v2\npchat.v1",
    'keep-alive'  => "WebSocket\nkeep-alive, Upgrade\n13\n$key",
    'version-8'   => "websocket\nUpgrade\n8\n$key",
    'short-key'   => "websocket\nUpgrade\n13\ndGhlIHNhbXBsZSBub25jZQ",
    'bad-origin'  => "websocket\nUpgrade\n13\n$key\nhttps://evil.example\n"
                     . "\nohttps://chat.example.com",
    'no-upgrade'  => "h2c\nUpgrade",
);

write_file('ws_handshake_fuzz', $_, $handshakes{$_}) for keys %handshakes;

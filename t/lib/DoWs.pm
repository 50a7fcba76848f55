package DoWs;

# A WebSocket client for the tests, on a plain socket: the handshake with
# any headers, frames built by hand (so a test can break every rule: no
# mask, RSV bits, bad opcodes, fragments), and the server's frames read
# back one at a time with a deadline.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);

our %OP = (cont => 0, text => 1, binary => 2, close => 8, ping => 9,
           pong => 10);

# DoWs->connect($port, $uri, headers => {...}, key => ..., version => ...,
#               tls => 1, pending => 1)
# Returns the client after a 101, or {status, head} of the refusal; with
# pending, the client as soon as the handshake is sent (see answer).
sub connect {
    my ($class, $port, $uri, %a) = @_;
    my $s;
    if ($a{tls}) {
        require IO::Socket::SSL;
        $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 10, SSL_verify_mode => 0)
            or return { status => 0, error => "connect: $!" };
    } else {
        $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                   Timeout => 10)
            or return { status => 0, error => "connect: $!" };
    }
    binmode $s;
    my $key = $a{key} // encode_base64(join('', map { chr rand 256 } 1 .. 16),
                                       '');
    my %h = ('Host' => 'localhost', 'Upgrade' => 'websocket',
             'Connection' => 'Upgrade', 'Sec-WebSocket-Key' => $key,
             'Sec-WebSocket-Version' => $a{version} // 13,
             %{ $a{headers} || {} });
    my $req = "GET $uri HTTP/1.1\r\n";
    for my $k (sort keys %h) {
        next unless defined $h{$k};
        $req .= "$k: $h{$k}\r\n";
    }
    $req .= "\r\n";
    print {$s} $req . ($a{after} // '');

    my $self = bless { sock => $s, buf => '', sel => IO::Select->new($s),
                       timeout => $a{timeout} // 10 }, $class;
    return $self if $a{pending};
    return $self->answer;
}

# the server's answer to a handshake sent with connect(..., pending => 1):
# the client after a 101, or {status, head} of the refusal
sub answer {
    my ($self) = @_;
    my $s = $self->{sock};
    my $deadline = time + $self->{timeout};
    while ((my $i = index($self->{buf}, "\r\n\r\n")) < 0) {
        return { status => 0, error => 'no answer' }
            unless $self->_fill($deadline);
    }
    my $i = index($self->{buf}, "\r\n\r\n");
    my $head = substr($self->{buf}, 0, $i);
    substr($self->{buf}, 0, $i + 4) = '';
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my %hdr;
    for (split /\r\n/, $head) {
        $hdr{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }
    $self->{status} = $status // 0;
    $self->{head} = $head;
    $self->{headers} = \%hdr;
    return $self if $self->{status} == 101;
    close $s;
    return { status => $self->{status}, head => $head, headers => \%hdr };
}

sub sock { $_[0]{sock} }

# more input before the deadline (0: only what is there now); at the end
# of the connection {eof} is set
sub _fill {
    my ($self, $deadline) = @_;
    return 0 if $self->{eof};
    my $left = $deadline - time;
    $left = 0 if $left < 0;
    my $tls_buffered = $self->{sock}->can('pending') && $self->{sock}->pending;
    return 0 unless $tls_buffered || $self->{sel}->can_read($left);
    my $n = sysread($self->{sock}, $self->{buf}, 262144, length $self->{buf});
    $self->{eof} = 1 unless $n;
    return $n ? 1 : 0;
}

# a frame as the client sends it; %o: fin => 0, rsv => 0..7, mask => 0,
# len => a false length to announce
sub frame {
    my ($op, $payload, %o) = @_;
    $op = $OP{$op} if exists $OP{$op};
    my $fin = $o{fin} // 1;
    my $b0 = ($fin ? 0x80 : 0) | (($o{rsv} // 0) << 4) | $op;
    my $len = $o{len} // length $payload;
    my $masked = $o{mask} // 1;
    my $f = chr($b0);
    my $m = $masked ? 0x80 : 0;
    if ($len < 126) {
        $f .= chr($m | $len);
    } elsif ($len < 65536) {
        $f .= chr($m | 126) . pack('n', $len);
    } else {
        $f .= chr($m | 127) . pack('Q>', $len);
    }
    return $f . $payload unless $masked;
    my $key = join '', map { chr rand 256 } 1 .. 4;
    my $x = $payload ^ substr($key x (int(length($payload) / 4) + 1), 0,
                              length $payload);
    return $f . $key . $x;
}

sub send_raw {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    return print { $self->{sock} } $bytes;
}

sub send_text { my ($s, $t) = @_; $s->send_raw(frame('text', $t)) }

sub send_close {
    my ($self, $code, $reason) = @_;
    $self->send_raw(frame('close', defined $code
                                   ? pack('n', $code) . ($reason // '')
                                   : ''));
}

# the next frame from the server: {op, fin, payload, code (close)}, or
# undef at the deadline or when the connection ended ({eof} is set)
sub read_frame {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    while (1) {
        my $f = $self->_parse;
        return $f if $f;
        return undef unless $self->_fill($deadline);
    }
}

sub _parse {
    my ($self) = @_;
    my $b = \$self->{buf};
    return undef if length $$b < 2;
    my ($b0, $b1) = unpack('CC', $$b);
    my $len = $b1 & 0x7f;
    my $off = 2;
    if ($len == 126) {
        return undef if length $$b < 4;
        $len = unpack('n', substr($$b, 2, 2));
        $off = 4;
    } elsif ($len == 127) {
        return undef if length $$b < 10;
        $len = unpack('Q>', substr($$b, 2, 8));
        $off = 10;
    }
    die "the server masked a frame" if $b1 & 0x80;
    return undef if length $$b < $off + $len;
    my $f = { fin => ($b0 >> 7) & 1, rsv => ($b0 >> 4) & 7, op => $b0 & 0xf,
              payload => substr($$b, $off, $len) };
    substr($$b, 0, $off + $len) = '';
    if ($f->{op} == 8) {
        $f->{code} = length $f->{payload} >= 2
                     ? unpack('n', $f->{payload}) : 1005;
        $f->{reason} = length $f->{payload} > 2
                       ? substr($f->{payload}, 2) : '';
    }
    return $f;
}

# the next data frame (pings are answered, pongs skipped); a close frame
# is returned as it is
sub read_message {
    my ($self, $timeout) = @_;
    while (my $f = $self->read_frame($timeout)) {
        if ($f->{op} == 9) {
            $self->send_raw(frame('pong', $f->{payload}));
            next;
        }
        next if $f->{op} == 10;
        return $f;
    }
    return undef;
}

# reads until the server's close frame: its code, or undef
sub close_code {
    my ($self, $timeout) = @_;
    while (my $f = $self->read_frame($timeout)) {
        return $f->{code} if $f->{op} == 8;
    }
    return undef;
}

# true once the server closed the TCP connection
sub closed {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    while (!$self->{eof} && time < $deadline) {
        $self->_fill($deadline);
    }
    return $self->{eof} ? 1 : 0;
}

sub DESTROY { close $_[0]{sock} if $_[0]{sock} }

1;

package evi

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// SchemeUDP is the scheme of the datagram transport: "udp:host:port" (an IPv6
// host in brackets). Each event is one datagram holding its encoding (see
// Encode), like OpenSIPS's event_datagram.
const SchemeUDP = "udp"

// NewUDP is the Factory of the udp scheme. It resolves the address once.
func NewUDP(s Socket) (Transport, error) {
	host, port, err := net.SplitHostPort(s.Address())
	if err == nil && host == "" {
		err = fmt.Errorf("missing host")
	}
	if err == nil {
		if p, perr := strconv.Atoi(port); perr != nil || p < 1 || p > 65535 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: want udp:host:port: %v", ErrMalformedSocket, s, err)
	}
	conn, err := net.Dial("udp", s.Address())
	if err != nil {
		return nil, fmt.Errorf("evi: %s: %w", s, err)
	}
	return &udpTransport{conn: conn, socket: s}, nil
}

type udpTransport struct {
	conn   net.Conn
	socket Socket
}

func (u *udpTransport) Send(ctx context.Context, ev *Event) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Time{}
	}
	if err := u.conn.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("evi: %s: %w", u.socket, err)
	}
	if _, err := u.conn.Write(ev.Bytes()); err != nil {
		return fmt.Errorf("evi: %s: %w", u.socket, err)
	}
	return nil
}

func (u *udpTransport) Close() error { return u.conn.Close() }

var (
	_ Transport = (*udpTransport)(nil)
	_ Transport = localTransport{}
)

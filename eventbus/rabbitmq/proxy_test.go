package rabbitmq

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards connections to the broker. Frozen, it forwards nothing in
// either direction and answers nothing, keeping connections open: a broker
// that hangs or a network that black-holes (OpenSIPS #81, #1836). With a TLS
// config it terminates TLS (the broker speaks plain AMQP behind it).
type tcpProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thaw   chan struct{} // closed when unfrozen
	held   bool
	replay chan struct{} // closed when the broker's replies are not held
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string, tlsConf *tls.Config) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	p := &tcpProxy{ln: ln, target: target, thaw: make(chan struct{}), replay: make(chan struct{})}
	close(p.thaw)
	close(p.replay)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.thaw = make(chan struct{})
	}
}

func (p *tcpProxy) unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
}

// holdReplies holds what the broker sends (confirms among it) while still
// forwarding what the client sends; releaseReplies forwards it again.
// Holding, then dropAll, then releaseReplies loses the confirms of messages
// the broker has taken.
func (p *tcpProxy) holdReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held = true
		p.replay = make(chan struct{})
	}
}

func (p *tcpProxy) releaseReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held = false
		close(p.replay)
	}
}

// gate returns a channel closed when the proxy is not frozen.
func (p *tcpProxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.thaw
}

// replyGate returns a channel closed when the broker's replies are not held.
func (p *tcpProxy) replyGate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replay
}

func noGate() <-chan struct{} { return closedCh }

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			<-p.gate() // a frozen proxy does not even connect upstream
			up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
			if err != nil || !p.track(up) {
				_ = c.Close()
				return
			}
			p.wg.Add(2)
			go p.pipe(up, c, noGate)
			go p.pipe(c, up, p.replyGate)
		}()
	}
}

// pipe copies src to dst, holding what it reads while the proxy is frozen
// or the channel hold returns is open.
func (p *tcpProxy) pipe(dst, src net.Conn, hold func() <-chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.gate()
			<-hold()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

// dropAll closes every connection made so far.
func (p *tcpProxy) dropAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
	if p.held {
		p.held = false
		close(p.replay)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.dropAll()
	p.wg.Wait()
}

// selfSigned returns a server TLS config for 127.0.0.1 and a client config
// trusting it.
func selfSigned(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sipasync test broker"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// MutualTLS returns a configuration for Config.TLS from PEM files: the
// node's certificate (its chain, leaf first) and private key, and the
// certificates of the CAs that sign the nodes' certificates. The node
// presents its certificate both when it serves and when it dials, and
// requires its peer's, signed by one of those CAs; TLS 1.3 only.
// serverName, if not "", is the name a dialer checks the peer's
// certificate for (a DNS name every node's certificate carries, for
// nodes whose addresses change); "" checks it for the peer's transport IP.
//
// The certificate and key are read again for a handshake once their files
// changed, so that a renewed certificate (cert-manager's, say) is used
// for the streams opened after it, without a restart; while the two do not
// match (one written, the other not yet) the last pair that did is used.
// The CA file is read once.
func MutualTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	pair := &keyPairFiles{cert: certFile, key: keyFile}
	if _, err := pair.load(); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: read the CA certificates: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: no PEM certificate in %s", caFile)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pair.load()
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.load()
		},
		RootCAs:    cas,
		ClientCAs:  cas,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ServerName: serverName,
	}, nil
}

// keyPairFiles is a certificate and its key, read from their files again
// when the files change.
type keyPairFiles struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate // the last pair that loaded
	seen    [2]fileVersion   // of the cert and the key, when current was loaded
}

// fileVersion tells a file's contents apart from the ones before it
// without reading it.
type fileVersion struct {
	mod  time.Time
	size int64
}

// load returns the pair as the files have it, or the last pair that
// loaded while they do not make one. Handshakes are rare (one per stream
// between two nodes), so two stats each cost nothing.
func (p *keyPairFiles) load() (*tls.Certificate, error) {
	var now [2]fileVersion
	for i, name := range []string{p.cert, p.key} {
		if fi, err := os.Stat(name); err == nil {
			now[i] = fileVersion{fi.ModTime(), fi.Size()}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != nil && now == p.seen {
		return p.current, nil
	}
	pair, err := tls.LoadX509KeyPair(p.cert, p.key)
	if err != nil {
		if p.current != nil {
			return p.current, nil // mid-renewal: the next handshake looks again
		}
		return nil, fmt.Errorf("cluster: load the node's certificate: %w", err)
	}
	p.current, p.seen = &pair, now
	return p.current, nil
}

// shakeHands opens a TLS connection to the transport at addr as a stream's
// dial does, and returns nil once the peer took this node's certificate,
// or the error that says why not: this node's check of the peer's
// certificate fails the handshake ("x509: ..."), and the peer's check of
// this node's, which TLS 1.3 makes after the dialer's handshake is done,
// comes as an alert on the first read ("remote error: tls: ..."), where a
// peer that took it sends its HTTP/2 settings. A gRPC dial cannot tell the
// two apart reliably: it writes its preface at once, and a peer that
// refuses closes the connection with the preface unread, which resets it,
// and the reset may come before the alert is read.
func (t *transport) shakeHands(ctx context.Context, addr string) error {
	var raw net.Conn
	var err error
	if t.cfg.dialer != nil {
		raw, err = t.cfg.dialer(ctx, addr)
	} else {
		raw, err = new(net.Dialer).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer raw.Close()
	cfg := t.cfg.TLS.Clone()
	if cfg.ServerName == "" { // as gRPC's credentials do: the peer's host
		if cfg.ServerName, _, err = net.SplitHostPort(addr); err != nil {
			return err
		}
	}
	cfg.NextProtos = []string{"h2"}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(deadline)
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// refusedCertificate reports whether err is a TLS handshake that failed
// over a certificate, either side's: this node's check of the peer's
// ("x509: ..."), or the peer's alert about this node's ("remote error:
// tls: ..."). Neither passes by dialing again.
func refusedCertificate(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "x509: ") || strings.Contains(msg, "remote error: tls: ")
}

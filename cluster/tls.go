package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
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
// The files are read again for a handshake once they changed, so that the
// streams opened after a change use it, without a restart: a renewed
// certificate (cert-manager's, say), and CAs added or taken away, as when
// the CA itself is replaced (every node's CA file gets the new CA beside
// the old one, then the nodes' certificates are renewed by the new one,
// then the old CA goes). The streams open meanwhile stay open. While the
// certificate and the key do not match (one written, the other not yet)
// the last pair that did is used; while the CA file holds no certificate,
// the last CAs it held. Replace a file whole (write another and rename
// it, as Kubernetes updates a Secret's volume): a CA file read half
// written holds only the CAs written so far.
//
// The config's GetConfigForClient gives the handshakes a copy of the
// config as MutualTLS returns it, with the CAs as the file has them; the
// transport's dials use it too (see Config.TLS). So a field set on the
// returned config later reaches no handshake: to change one, set it on a
// Clone whose GetConfigForClient is nil, which reads the CA file no more.
func MutualTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	pair := &watchedFiles[*tls.Certificate]{names: []string{certFile, keyFile}, read: func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: load the node's certificate: %w", err)
		}
		return &pair, nil
	}}
	if _, err := pair.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pair.get()
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.get()
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ServerName: serverName,
	}
	base := cfg.Clone() // without CAs
	withCAs := &watchedFiles[*tls.Config]{names: []string{caFile}, read: func() (*tls.Config, error) {
		cas, err := readCAs(caFile)
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		cfg.RootCAs, cfg.ClientCAs = cas, cas
		return cfg, nil
	}}
	current, err := withCAs.get()
	if err != nil {
		return nil, err
	}
	cfg.RootCAs, cfg.ClientCAs = current.RootCAs, current.ClientCAs
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return withCAs.get()
	}
	return cfg, nil
}

// watchedFiles is what read makes of the files names, made again for a
// handshake once one of them changed, and the last one made while they
// make none (a certificate written and its key not yet, a file written
// half): the next handshake looks again. Handshakes are rare (one per
// stream between two nodes), so a stat per file each costs nothing.
type watchedFiles[T any] struct {
	names []string
	read  func() (T, error)

	mu      sync.Mutex
	current T
	made    bool          // current holds what read made
	seen    []fileVersion // of the files, when current was made
}

// get returns what the files make, or the last thing they made.
func (w *watchedFiles[T]) get() (T, error) {
	now := make([]fileVersion, len(w.names))
	for i, name := range w.names {
		if fi, err := os.Stat(name); err == nil {
			now[i] = fileVersion{fi.ModTime(), fi.Size()}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.made && slices.Equal(now, w.seen) {
		return w.current, nil
	}
	v, err := w.read()
	if err != nil {
		if w.made {
			return w.current, nil // mid-change: the next handshake looks again
		}
		return v, err
	}
	w.current, w.seen, w.made = v, now, true
	return v, nil
}

// readCAs returns the certificates of the PEM file name.
func readCAs(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("cluster: read the CA certificates: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: no PEM certificate in %s", name)
	}
	return cas, nil
}

// dialConfig returns the configuration of a dial on conn with cfg: the
// one cfg.GetConfigForClient gives, if set, as a handshake served with cfg
// would use, so that a config that changes (MutualTLS's, as its files do)
// secures the dials as it does the served streams.
func dialConfig(cfg *tls.Config, conn net.Conn) (*tls.Config, error) {
	if cfg.GetConfigForClient == nil {
		return cfg, nil
	}
	got, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{Conn: conn})
	if err != nil {
		return nil, fmt.Errorf("cluster: the TLS configuration of a dial (Config.TLS.GetConfigForClient): %w", err)
	}
	if got == nil {
		return cfg, nil
	}
	return got, nil
}

// tlsCredentials are gRPC's TLS credentials for Config.TLS, but for the
// dials' configuration, which dialConfig gives.
type tlsCredentials struct {
	credentials.TransportCredentials
	cfg *tls.Config
}

func newTLSCredentials(cfg *tls.Config) tlsCredentials {
	return tlsCredentials{credentials.NewTLS(cfg), cfg}
}

// ClientHandshake shakes hands as gRPC's credentials do, with the
// configuration dialConfig gives.
func (c tlsCredentials) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := dialConfig(c.cfg, conn)
	if err != nil {
		return nil, nil, err
	}
	if cfg == c.cfg {
		return c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	}
	// Credentials per dial (gRPC's clone the config): dials are one per
	// stream between two nodes.
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
}

// Clone returns a copy of c.
func (c tlsCredentials) Clone() credentials.TransportCredentials {
	return tlsCredentials{c.TransportCredentials.Clone(), c.cfg}
}

// fileVersion tells a file's contents apart from the ones before it
// without reading it.
type fileVersion struct {
	mod  time.Time
	size int64
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
	cfg, err := dialConfig(t.cfg.TLS, raw)
	if err != nil {
		return err
	}
	cfg = cfg.Clone()
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

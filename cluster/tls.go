package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
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
// The files are read once: to change certificates, restart the node, or
// build a tls.Config whose GetCertificate and GetClientCertificate read
// them again.
func MutualTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: load the node's certificate: %w", err)
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
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      cas,
		ClientCAs:    cas,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   serverName,
	}, nil
}

#!/usr/bin/env bash
# Make a private certificate authority and one certificate for the nodes of a crate-dask cluster.
#
# Usage: pipelines/cluster/make_certs.sh CERT_DIR
#
# Writes CERT_DIR/ca.pem (the CA certificate, give it to every node), ca-key.pem
# (the CA's key: keep it off the cluster once the certificates are made),
# node.pem and node-key.pem (the certificate and key the scheduler, the workers
# and the client present). Dask checks that the peer's certificate is signed by
# the CA (mutual TLS), not its host name, so one node certificate serves every
# machine; make one per machine (run again with another CERT_DIR and the same
# CA) if you want to revoke machines one by one.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 CERT_DIR" >&2
    exit 2
fi
DIR=$1
mkdir -p "$DIR"
cd "$DIR"
umask 077
if [ ! -f ca.pem ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 825 -keyout ca-key.pem -out ca.pem \
        -subj "/CN=crate-dask cluster CA" 2>/dev/null
fi
openssl req -newkey rsa:3072 -nodes -sha256 -keyout node-key.pem -out node.csr \
    -subj "/CN=crate-dask node" 2>/dev/null
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days 825 \
    -out node.pem 2>/dev/null
rm -f node.csr
chmod 644 ca.pem node.pem
echo "certificates in $(pwd): ca.pem node.pem node-key.pem (keep ca-key.pem and node-key.pem private)"

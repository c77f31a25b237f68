#!/usr/bin/env bash
# Make a private certificate authority and one certificate for the nodes of a crate-dask cluster.
#
# Usage: pipelines/cluster/make_certs.sh CERT_DIR [CA_DIR]
#
# Writes CERT_DIR/ca.pem (the CA certificate), node.pem and node-key.pem (the
# certificate and key the scheduler, the workers and the client present): CERT_DIR
# is what every node gets, as a whole. The CA's own key goes to CA_DIR (default:
# CERT_DIR-ca, beside it), never into CERT_DIR: keep it off the cluster. Dask checks
# that the peer's certificate is signed by the CA (mutual TLS), not its host name,
# so one node certificate serves every machine; make one per machine (run again
# with another CERT_DIR and the same CA_DIR) if you want to revoke machines one by one.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 CERT_DIR [CA_DIR]" >&2
    exit 2
fi
DIR=$1
CA=${2:-${DIR%/}-ca}
umask 077
mkdir -p "$DIR" "$CA"
DIR=$(cd "$DIR" && pwd)
CA=$(cd "$CA" && pwd)
if [ ! -f "$CA/ca.pem" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 825 -keyout "$CA/ca-key.pem" -out "$CA/ca.pem" \
        -subj "/CN=crate-dask cluster CA" 2>/dev/null
fi
openssl req -newkey rsa:3072 -nodes -sha256 -keyout "$DIR/node-key.pem" -out "$DIR/node.csr" \
    -subj "/CN=crate-dask node" 2>/dev/null
openssl x509 -req -in "$DIR/node.csr" -CA "$CA/ca.pem" -CAkey "$CA/ca-key.pem" -CAcreateserial \
    -CAserial "$CA/ca.srl" -sha256 -days 825 -out "$DIR/node.pem" 2>/dev/null
rm -f "$DIR/node.csr"
cp "$CA/ca.pem" "$DIR/ca.pem"
chmod 644 "$DIR/ca.pem" "$DIR/node.pem"
echo "certificates in $DIR: ca.pem node.pem node-key.pem (give the folder to every node; keep node-key.pem private)"
echo "the CA's key is in $CA: keep it off the cluster"

#!/usr/bin/env bash
# A throw-away CA and certificates for trying the REST API over TLS:
#   ./make-test-ca.sh DIR [NAME=ADDRESS ...]     (default: pg1=10.0.0.11 pg2=10.0.0.12 pg3=10.0.0.13)
# writes into DIR:
#   ca.crt, ca.key          the CA (restapi.cafile, ctl.cacert)
#   NAME.crt, NAME.key      one per member: its REST API's certificate (restapi.certfile/keyfile),
#                           valid for NAME, ADDRESS, localhost and 127.0.0.1; also usable as a
#                           client certificate, which keeld presents when it calls other members
#   client.crt, client.key  keelctl's (or patronictl's) client certificate (ctl.certfile/keyfile)
# For production, use certificates from your own CA; nothing here is Keel-specific.
set -euo pipefail
dir="${1:?usage: make-test-ca.sh DIR [NAME=ADDRESS ...]}"
shift
[ $# -gt 0 ] || set -- pg1=10.0.0.11 pg2=10.0.0.12 pg3=10.0.0.13
mkdir -p "$dir"
cd "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 365 -subj "/CN=Keel test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt

# issue NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE
issue() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$2" "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

for member in "$@"; do
    name="${member%%=*}" address="${member#*=}"
    case "$address" in
        *[!0-9.:]*) san="DNS:$address" ;;   # a host name
        *) san="IP:$address" ;;
    esac
    issue "$name" "DNS:$name,$san,DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth
done
issue client "DNS:keelctl" clientAuth
chmod 0644 ./*.crt
echo "wrote $(ls | tr "\n" " ")in $dir"

#!/usr/bin/env bash
# Static self-signed TLS for the kustomize base (what the Helm chart's tls.mode=selfSigned does at
# install): makes a CA and a serving certificate for the adapter's Services with openssl, then (with
# --apply) creates Secret <namespace>/faro-adapter-tls and puts the CA into the APIService caBundle.
#
#   manifests/tls/self-signed.sh [--out DIR] [--namespace faro-system] [--days 3650] [--apply]
#
# Re-run it before the certificate expires (default 10 years); the adapter reads the Secret's files.
set -euo pipefail

out="" ns="faro-system" days=3650 apply=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --namespace) ns="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --apply) apply=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "self-signed.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || out="$(mktemp -d)"
mkdir -p "$out"
umask 077

san=""
for svc in faro-adapter faro-keda-scaler; do
  for name in "$svc" "$svc.$ns" "$svc.$ns.svc" "$svc.$ns.svc.cluster.local"; do
    san="${san:+$san,}DNS:$name"
  done
done

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/CN=faro-adapter-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$out/tls.key" -out "$out/tls.csr" \
  -subj "/CN=faro-adapter" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
  "$san" > "$out/ext.cnf"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$out/ext.cnf" -out "$out/tls.crt" 2>/dev/null
rm -f "$out/tls.csr" "$out/ext.cnf" "$out/ca.srl"
echo "self-signed.sh: wrote $out/{ca.crt,ca.key,tls.crt,tls.key}" >&2

if [ "$apply" = 1 ]; then
  kubectl -n "$ns" create secret tls faro-adapter-tls --cert="$out/tls.crt" --key="$out/tls.key" \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl patch apiservice v1beta1.external.metrics.k8s.io --type=merge \
    -p "{\"spec\":{\"caBundle\":\"$(base64 -w0 < "$out/ca.crt")\"}}"
  kubectl -n "$ns" rollout restart deployment/faro-adapter
fi

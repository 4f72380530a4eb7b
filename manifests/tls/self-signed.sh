#!/usr/bin/env bash
# Static self-signed TLS for the kustomize base (what the Helm chart's tls.mode=selfSigned does at
# install): makes one CA with openssl and, signed by it, the adapter's serving certificate (its Services),
# the optimizer's plan-API serving certificate (Service faro-optimizer) and the adapter's plan-API client
# certificate (CN faro-adapter); with --apply it creates the Secrets faro-adapter-tls, faro-optimizer-tls and
# faro-adapter-client-tls in <namespace> (each with ca.crt) and puts the CA into the APIService caBundle.
#
#   manifests/tls/self-signed.sh [--out DIR] [--namespace faro-system] [--days 3650] [--apply]
#
# Re-run it before the certificates expire (default 10 years); both components re-read the plan-API files.
set -euo pipefail

out="" ns="faro-system" days=3650 apply=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --namespace) ns="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --apply) apply=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
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
  -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/CN=faro-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# sign STEM CN EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: $out/STEM.{crt,key} signed by the CA.
sign() {
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$out/$1.key" -out "$out/$1.csr" -subj "/CN=$2" 2>/dev/null
  {
    [ -z "${4:-}" ] || printf 'subjectAltName=%s\n' "$4"
    printf 'extendedKeyUsage=%s\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$3"
  } > "$out/$1.cnf"
  openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$out/$1.cnf" -out "$out/$1.crt" 2>/dev/null
  rm -f "$out/$1.csr" "$out/$1.cnf"
}
optimizer_san=""
for name in faro-optimizer "faro-optimizer.$ns" "faro-optimizer.$ns.svc" "faro-optimizer.$ns.svc.cluster.local"; do
  optimizer_san="${optimizer_san:+$optimizer_san,}DNS:$name"
done
sign tls faro-adapter serverAuth "$san"
sign optimizer faro-optimizer serverAuth "$optimizer_san"
sign client faro-adapter clientAuth
rm -f "$out/ca.srl"
echo "self-signed.sh: wrote $out/{ca.crt,ca.key,tls.*,optimizer.*,client.*}" >&2

if [ "$apply" = 1 ]; then
  for pair in faro-adapter-tls:tls faro-optimizer-tls:optimizer faro-adapter-client-tls:client; do
    secret="${pair%%:*}" stem="${pair#*:}"
    kubectl -n "$ns" create secret generic "$secret" --type=kubernetes.io/tls \
      --from-file=tls.crt="$out/$stem.crt" --from-file=tls.key="$out/$stem.key" --from-file=ca.crt="$out/ca.crt" \
      --dry-run=client -o yaml | kubectl apply -f -
  done
  kubectl patch apiservice v1beta1.external.metrics.k8s.io --type=merge \
    -p "{\"spec\":{\"caBundle\":\"$(base64 -w0 < "$out/ca.crt")\"}}"
  kubectl -n "$ns" rollout restart deployment/faro-optimizer deployment/faro-adapter
fi

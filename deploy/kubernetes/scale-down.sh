#!/bin/sh
# Scales the StatefulSet `agora` down to N pods, removing each leaving node for good first:
# every replica it holds is rebuilt on the remaining nodes and it leaves every Raft group,
# so nothing depends on it when its pod and volume go (the StatefulSet deletes a scaled-down
# pod's volume: persistentVolumeClaimRetentionPolicy.whenScaled = Delete).
#
#   deploy/kubernetes/scale-down.sh N        (kubectl's current context and namespace)
#
# Needs kubectl, curl and jq on the operator's machine, admin_mutations = true in the
# cluster file (the template's default) and at least as many remaining nodes as replicas per
# shard (the cluster refuses otherwise: 409 too-few-members). Scaling up needs no script:
# `kubectl scale statefulset agora --replicas=N`; a new pod joins by itself.
set -eu
target=${1:?usage: scale-down.sh N (the number of pods to keep)}
case $target in '' | *[!0-9]*) echo "scale-down: N must be a number" >&2; exit 2 ;; esac
current=$(kubectl get statefulset agora -o jsonpath='{.spec.replicas}')
if [ "$target" -ge "$current" ]; then
  echo "scale-down: the StatefulSet has $current pods; nothing to remove for $target" >&2
  exit 0
fi
token=$(kubectl get secret agora-secrets -o jsonpath='{.data.AGORA_ADMIN_TOKEN}' | base64 -d)
port=${AGORA_ADMIN_LOCAL_PORT:-19090}
forward() { # pod: forwards localhost:$port to the pod's admin port until the next call
  [ -n "${pf:-}" ] && kill "$pf" 2>/dev/null || true
  kubectl port-forward "pod/$1" "$port:9090" >/dev/null &
  pf=$!
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "scale-down: cannot reach $1's admin port" >&2; exit 1
}
trap '[ -n "${pf:-}" ] && kill "$pf" 2>/dev/null' EXIT
admin() { curl -sS -H "Authorization: Bearer $token" "$@"; }

offset=$(kubectl get configmap agora-cluster -o jsonpath='{.data.joiner-id-offset}')
offset=${offset:-0}
ordinal=$((current - 1))
while [ "$ordinal" -ge "$target" ]; do
  pod=agora-$ordinal
  id=$(kubectl exec "$pod" -c agora -- cat /etc/agora/node-id)
  echo "scale-down: removing node $id (pod $pod)" >&2
  forward agora-0
  status=$(admin -o /dev/stderr -w '%{http_code}' -X POST "http://127.0.0.1:$port/admin/cluster/members/$id/remove")
  case $status in
    202) ;;
    *) echo "scale-down: the removal of node $id answered $status; nothing scaled" >&2; exit 1 ;;
  esac
  # Done when the leaving node holds no replica and runs no group.
  forward "$pod"
  until admin "http://127.0.0.1:$port/admin/cluster/replicas" |
    jq -e '.progress.placed == 0 and .progress.leaving == 0 and (.groups | length) == 0' >/dev/null; do
    admin "http://127.0.0.1:$port/admin/cluster/replicas" | jq -c '{node: .me, progress, groups: (.groups | length)}' >&2 || true
    sleep 2
  done
  [ "$id" -gt "$offset" ] && offset=$id
  ordinal=$((ordinal - 1))
done
# A removed id stays removed: a pod that joins later takes an id above every one used.
kubectl patch configmap agora-cluster --type merge -p "{\"data\":{\"joiner-id-offset\":\"$offset\"}}"
kubectl scale statefulset agora --replicas="$target"
echo "scale-down: $target pods; joiners' ids now start above $offset" >&2

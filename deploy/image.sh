#!/usr/bin/env bash
# Build agbento's OCI image without a Docker engine or a registry, then smoke-test it.
#
#   bash deploy/image.sh            # needs root, debootstrap, buildah, podman (apt)
#
# With Docker, `bentoml containerize agbento:latest` is all you need; this is the offline
# recipe: a Debian base made with debootstrap (the mirror comes from this machine's apt
# sources), Python wheels downloaded on the host and mounted at build time, buildah with
# private vfs storage and chroot isolation. The smoke test starts the image with
# `buildah run`, waits for /readyz, calls /predict and /model/info with an API key, checks
# the server runs as a non-root user and fused (API workers only, no model service), sends
# SIGTERM and checks a clean exit. Everything it
# writes lives under WORK (default /tmp/agbento-image, about 3 GB) and is removed at the
# end unless KEEP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/agbento-image}"
PORT="${PORT:-3990}"
IMAGE="${IMAGE:-localhost/agbento:offline}"
SUITE=bookworm
# uvicorn's drain bound on SIGTERM (BentoML's hidden `serve --timeout-graceful-shutdown`):
# without it a worker was seen waiting for minutes after SIGTERM
DRAIN_S="${DRAIN_S:-20}"
BIN="$ROOT/.venv/bin"
export BENTOML_HOME="$WORK/bentoml"
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
export BUILDAH_ISOLATION=chroot
export BENTOML_DO_NOT_TRACK=true

say() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }
cleanup() {
  if [ -n "${SERVER_PID:-}" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  buildah rm --all >/dev/null 2>&1 || true
  if [ "${KEEP:-0}" != 1 ]; then
    # chroot isolation may leave bind mounts under the storage; undo them before deleting
    grep " $WORK/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

for tool in debootstrap buildah podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install debootstrap buildah podman)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap and chroot builds need it)" >&2; exit 2; }
[ -x "$BIN/python" ] || { echo "error: run \`make install\` first" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK"/{storage,run,wheels,keys}
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF

# The mirror this machine already uses (deb822 .sources or a classic sources.list line).
mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || { echo "error: no Debian mirror in /etc/apt/sources*" >&2; exit 2; }
  echo "$uri"
}

say "model and Bento"
"$BIN/bentoml" models get agbento-demo:latest >/dev/null 2>&1 \
  || (cd "$ROOT" && "$BIN/python" train.py --demo >/dev/null)
# the offline variant of bentofile.yaml: install only from the mounted wheelhouse
"$BIN/python" - "$ROOT/bentofile.yaml" "$WORK/bentofile.yaml" <<'PY'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
spec["python"].update(lock_packages=False, no_index=True, find_links=["/wheels"])
yaml.safe_dump(spec, open(sys.argv[2], "w"), sort_keys=False)
PY
TAG=$(cd "$ROOT" && "$BIN/bentoml" build -f "$WORK/bentofile.yaml" . --output tag | tail -1 | sed 's/^__tag__://')
BENTO_DIR=$("$BIN/python" -c "import bentoml,sys; print(bentoml.get(sys.argv[1]).path)" "$TAG")
say "built $TAG"

say "wheelhouse"
grep -vE '^(--|#)' "$BENTO_DIR/env/python/requirements.txt" > "$WORK/requirements.txt"
# Debian bookworm runs Python 3.11.2: a few markers (redis -> async-timeout) differ from
# the host's 3.11.x, hence --python-version 3.11.2 and the explicit extra.
"$BIN/python" -m pip download --quiet --only-binary=:all: --python-version 3.11.2 \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any \
  -d "$WORK/wheels" -r "$WORK/requirements.txt" uv "async-timeout>=4.0.3" 2>&1 | grep -v "^WARNING: Location" || true
say "$(ls "$WORK/wheels" | wc -l) wheels, $(du -sh "$WORK/wheels" | cut -f1)"

say "base image (debootstrap $SUITE from $(mirror))"
ROOTFS="$WORK/rootfs"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates,gnupg2,build-essential,git \
  "$SUITE" "$ROOTFS" "$(mirror)" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log"; exit 1; }
# uv from the wheelhouse; empty apt sources make the Dockerfile's apt step an offline no-op
"$BIN/python" -m zipfile -e "$(ls "$WORK"/wheels/uv-*.whl | head -1)" "$WORK/uv-wheel"
install -m 0755 "$(find "$WORK/uv-wheel" -type f -path '*/scripts/uv' | head -1)" "$ROOTFS/usr/local/bin/uv"
: > "$ROOTFS/etc/apt/sources.list"
rm -f "$ROOTFS"/etc/apt/sources.list.d/*
tar -C "$ROOTFS" -c . | podman import --quiet - python:3.11-slim >/dev/null
podman tag python:3.11-slim docker.io/library/python:3.11-slim
rm -rf "$ROOTFS"

say "containerize"
"$BIN/bentoml" containerize "$TAG" --backend buildah -t "$IMAGE" \
  --opt "volume=$WORK/wheels:/wheels:ro" >"$WORK/containerize.log" 2>&1 \
  || { tail -30 "$WORK/containerize.log"; exit 1; }
SIZE=$(buildah images --format '{{.Size}}' "$IMAGE" | head -1)
say "image $IMAGE, $SIZE"

say "smoke test"
KEY=$("$BIN/python" -m agbento.keys create --id smoke --permissions predict,model_info \
  --file "$WORK/keys/keys.json" | tail -1)
chmod 0755 "$WORK/keys" && chmod 0644 "$WORK/keys/keys.json"
CONTAINER=$(buildah from "$IMAGE")
# A PID namespace (--kill-child ends every server process with the test) needs its own
# /proc (--mount-proc): without it the container sees the host's /proc, and BentoML's
# supervisor (circus, which looks its workers up there by PID) found a random host process
# or none, signalled only some workers on SIGTERM and waited for the others forever.
unshare --pid --fork --kill-child --mount-proc buildah run --network host \
  -v "$WORK/keys:/etc/agbento/keys:ro" \
  --env AGBENTO_API_KEYS_FILE=/etc/agbento/keys/keys.json \
  --env AGBENTO_SHUTDOWN_TIMEOUT_S=$((DRAIN_S + 5)) \
  "$CONTAINER" -- /home/bentoml/bento/env/docker/entrypoint.sh --port "$PORT" \
  --timeout-graceful-shutdown "$DRAIN_S" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
START=$SECONDS
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -30 "$WORK/serve.log"; exit 1; }
  [ $((SECONDS - START)) -lt 180 ] || { echo "not ready after 180 s"; tail -30 "$WORK/serve.log"; exit 1; }
  sleep 0.5
done
say "ready after $((SECONDS - START)) s"
ROW='{"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215, "body_mass_g": 5000, "sex": "female", "year": 2008}'
curl -sf -X POST "http://127.0.0.1:$PORT/predict" -H "X-API-Key: $KEY" \
  -H 'content-type: application/json' -d "{\"data\": [$ROW]}" | tee "$WORK/predict.json"; echo
grep -q '"predictions":\["Gentoo"\]' "$WORK/predict.json"
curl -sf "http://127.0.0.1:$PORT/model/info" -H "X-API-Key: $KEY" | grep -q '"label":"species"'
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/predict" \
  -H 'content-type: application/json' -d "{\"data\": [$ROW]}")
[ "$STATUS" = 401 ] || { echo "a request without a key got $STATUS"; exit 1; }
# the server processes and their user, as the host sees them: the arbiter and its workers
# only (other BentoML servers may run on the host)
ARBITER=$(pgrep -f "bentoml serve.*--port $PORT" | head -1 || true)
[ -n "$ARBITER" ] || { echo "no server process found"; exit 1; }
SERVE_PIDS="$ARBITER $(pgrep -P "$ARBITER" | tr '\n' ' ')"
for pid in $SERVE_PIDS; do
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo gone)
  [ "$uid" = gone ] || [ "$uid" != 0 ] || { echo "process $pid runs as root"; exit 1; }
done
say "runs as uid $(awk '/^Uid:/ {print $2}' "/proc/$ARBITER/status")"
# the image's default topology is fused (bentofile.yaml): API workers only, no model service
WORKERS=$(pgrep -P "$ARBITER" -f -- "--service-name agbento " | wc -l)
[ "$WORKERS" -ge 1 ] || { echo "no API worker process found"; exit 1; }
if pgrep -P "$ARBITER" -f -- "--service-name agbento-model" >/dev/null; then
  echo "a model-service process runs: the image does not serve fused"; exit 1
fi
say "fused: $WORKERS API workers, no model service"
kill -TERM "$ARBITER"
STOP=$SECONDS
( sleep $((DRAIN_S + 40)); kill -KILL "$SERVER_PID" 2>/dev/null ) & WATCHDOG=$!
wait "$SERVER_PID" && CODE=0 || CODE=$?
kill "$WATCHDOG" 2>/dev/null || true
SERVER_PID=
say "SIGTERM: exited with $CODE after $((SECONDS - STOP)) s"
[ "$CODE" = 0 ] || { echo "no clean exit after SIGTERM"; tail -20 "$WORK/serve.log"; exit 1; }
DRAINED=$(grep -c '"SIGTERM: draining' "$WORK/serve.log" || true)
[ "$DRAINED" = "$WORKERS" ] || { echo "$DRAINED of $WORKERS workers drained on SIGTERM"; exit 1; }
say "every worker drained ($DRAINED)"
# secure by default: without a keys file the image must refuse to serve
if timeout 120 unshare --pid --fork --kill-child --mount-proc buildah run --network host "$CONTAINER" -- \
    /home/bentoml/bento/env/docker/entrypoint.sh --port "$PORT" >"$WORK/nokeys.log" 2>&1; then
  echo "the image served without API keys"; exit 1
fi
grep -q "refusing to serve without keys" "$WORK/nokeys.log" \
  || { echo "no clear refusal without keys:"; tail -5 "$WORK/nokeys.log"; exit 1; }
say "refuses to start without API keys"
say "image OK: $IMAGE ($SIZE), built and smoke-tested in ${SECONDS}s"

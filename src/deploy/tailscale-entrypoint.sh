#!/bin/sh
# guestlist and tailscaled in one machine (the Dockerfile's `tailscale` stage, for Fly.io):
# tailscaled runs in userspace networking with its state on the /data volume, joins the tailnet
# with TS_AUTHKEY, and `tailscale funnel` serves guestlist (listening on loopback only) at
# https://<TS_HOSTNAME>.<tailnet>.ts.net: to the tailnet through Serve, with identity headers,
# and to everyone else (Plex users, Cloudflare Access's token calls) through Funnel.
# The arguments are guestlist's command (the image's CMD).
#
# Supervision: if either process ends, the other is stopped and this script exits non-zero,
# so the machine restarts; a guestlist whose tailscaled is gone would refuse everyone.
set -eu

: "${TS_AUTHKEY:?TS_AUTHKEY is not set: create an auth key in the Tailscale admin console and run fly secrets set TS_AUTHKEY=tskey-auth-...}"
state_dir="${TS_STATE_DIR:-/data/tailscale}"
socket="${TS_SOCKET:-/var/run/tailscale/tailscaled.sock}"
hostname="${TS_HOSTNAME:-guestlist}"
port="${PORT:-8080}"

mkdir -p "$state_dir" "$(dirname "$socket")"
chmod 700 "$state_dir"

tailscaled --tun=userspace-networking --statedir="$state_dir" --socket="$socket" &
tailscaled_pid=$!

# tailscaled creates its socket once it can take commands.
tries=0
until [ -S "$socket" ]; do
  if ! kill -0 "$tailscaled_pid" 2>/dev/null; then
    echo "tailscale-entrypoint: tailscaled exited before it was ready" >&2
    exit 1
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 300 ]; then
    echo "tailscale-entrypoint: tailscaled did not open $socket within 30 s" >&2
    kill "$tailscaled_pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done

# The auth key is only needed the first time: the node's identity then lives in the state dir.
tailscale --socket="$socket" up --authkey="$TS_AUTHKEY" --hostname="$hostname"
# One HTTPS name for both audiences: Serve for the tailnet (with Tailscale-User-* headers, which
# guestlist reads with serve_headers: true), Funnel for the public internet (no identity headers).
tailscale --socket="$socket" funnel --bg "$port"

"$@" &
app_pid=$!

stopping=0
stop() {
  stopping=1
  kill -TERM "$app_pid" 2>/dev/null || true
}
trap stop TERM INT

while kill -0 "$tailscaled_pid" 2>/dev/null && kill -0 "$app_pid" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done

if [ "$stopping" = 1 ]; then
  # Asked to stop: let guestlist finish its requests, then take tailscaled down.
  wait "$app_pid" || true
  kill -TERM "$tailscaled_pid" 2>/dev/null || true
  wait "$tailscaled_pid" || true
  exit 0
fi

if kill -0 "$app_pid" 2>/dev/null; then
  echo "tailscale-entrypoint: tailscaled exited; stopping guestlist so the machine restarts" >&2
  kill -TERM "$app_pid" 2>/dev/null || true
  wait "$app_pid" || true
else
  echo "tailscale-entrypoint: guestlist exited; stopping tailscaled so the machine restarts" >&2
  kill -TERM "$tailscaled_pid" 2>/dev/null || true
  wait "$tailscaled_pid" || true
fi
exit 1

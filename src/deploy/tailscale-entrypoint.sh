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

refuse() {
  echo "tailscale-entrypoint: refusing to start: $*" >&2
  exit 1
}

# tailscaled's state (the node's private key, its TLS keys) is on the volume whose top directory
# is guestlist's data_dir, and so belongs to the user guestlist runs as. Between two boots that
# user can plant a link at the state directory's name, or move the directory away and put one of
# its own there, to have the keys written where it can read them. Now, at boot, nothing but this
# script runs, so what is checked here cannot change before tailscaled has it.
case "$state_dir" in
  /*) ;;
  *) refuse "TS_STATE_DIR ($state_dir) must be an absolute path" ;;
esac
path=
rest="${state_dir#/}"
while [ -n "$rest" ]; do
  name="${rest%%/*}"
  case "$rest" in */*) rest="${rest#*/}" ;; *) rest= ;; esac
  [ -n "$name" ] || continue
  path="$path/$name"
  if [ -L "$path" ]; then
    refuse "$path is a symbolic link (to $(readlink "$path")), and tailscaled's state directory ($state_dir) is not reached through one: whoever can change the link would choose where the node's private key is written. Set TS_STATE_DIR to the directory itself, or remove the link."
  fi
done
mkdir -p "$state_dir" "$(dirname "$socket")"
# Only tailscaled, running as this user, writes there: anything else (a link, something another
# user owns, the directory itself made by another user) was put there by someone else.
me="$(id -u)"
foreign="$(find "$state_dir" \( -type l -o ! -user "$me" \) -print | head -n 1)"
if [ "$foreign" = "$state_dir" ]; then
  refuse "tailscaled's state directory $state_dir belongs to uid $(stat -c %u "$state_dir"), not $me, so another user made it (perhaps to have the node's keys written where it can read them). Look at it, then remove it (the node then joins again with TS_AUTHKEY)."
elif [ -n "$foreign" ]; then
  refuse "$foreign, in tailscaled's state directory, is a symbolic link or belongs to another user than uid $me, so someone else put it there (perhaps to have the node's keys written where they can read them). Look at it, then remove it, or the whole directory (the node then joins again with TS_AUTHKEY)."
fi
chmod 700 "$state_dir"

# tailscaled gets the directory checked above, open, not its name: it writes every state file
# and certificate as a path under --statedir, and /proc/self/fd/3/<name> is resolved from the open
# directory, so a link or another directory put at the name later is never used. Only tailscaled
# holds it open.
exec 3<"$state_dir"
if [ ! -d /proc/self/fd/3 ] || [ "$(stat -L -c %d:%i /proc/self/fd/3)" != "$(stat -c %d:%i "$state_dir")" ]; then
  refuse "/proc/self/fd is not available (is /proc mounted?): tailscaled is handed its state directory there, as an open descriptor, so that nobody can swap the directory under it"
fi
tailscaled --tun=userspace-networking --statedir=/proc/self/fd/3 --socket="$socket" &
tailscaled_pid=$!
exec 3<&-

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

#!/usr/bin/env bash
# An ordinary HTTP server, reached with curl through I6P: `i6p expose` makes it a service of
# one node, `i6p forward` carries a local TCP port of another node to it. On one machine here
# (two identities, ::1); across machines, run the expose half on the server and the forward
# half where curl runs, with the contact the first printed.
#
#   bash examples/http_forward.sh        (needs `i6p` on PATH, curl, python3)
set -euo pipefail

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "hello from an HTTP server behind I6P" > "$work/index.html"

# Reads the first line a background command writes to $1, waiting up to 20 s.
first_line() {
  for _ in $(seq 200); do
    if [ -s "$1" ]; then head -n 1 "$1"; return; fi
    sleep 0.1
  done
  echo "no output in $1" >&2; exit 1
}

# 1. The HTTP server (the standard library's), on a free port of ::1.
port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind ::1 --directory "$work" >/dev/null 2>&1 &

# 2. Its node: `i6p expose` prints the contact peers dial (a key, addresses).
I6P_HOME="$work/server" i6p expose "$port" --host ::1 --service http --json >"$work/expose.json" &
contact=$(first_line "$work/expose.json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["contact"])')

# 3. The client's node: a local port carried to the service.
I6P_HOME="$work/client" i6p forward "$contact" 0 --service http --json >"$work/forward.json" &
local=$(first_line "$work/forward.json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["port"])')

# 4. Plain curl, as to any local server.
curl --silent --show-error --fail --retry 3 --retry-connrefused "http://[::1]:$local/index.html"

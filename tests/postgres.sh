#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for the tuning tests (Debian's `postgresql`).
#   tests/postgres.sh start DIR PORT   -> prints the URL postgresql://studio@127.0.0.1:PORT/postgres
#   tests/postgres.sh stop DIR
# Runs the server as the `postgres` user when started as root (postgres refuses root).
# DIR must be reachable by that user (e.g. mktemp -d /tmp/studio-pg.XXXX, not a 0700 tmp_path).
# Exit 3 when no PostgreSQL binaries are installed (the tests then skip with that reason).
set -euo pipefail

cmd=${1:?usage: postgres.sh start|stop DIR [PORT]}
dir=${2:?data folder}
port=${3:-55432}

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && bindir=$d
done
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ]; then
  echo "no PostgreSQL binaries (apt-get install -y postgresql)" >&2
  exit 3
fi

as_pg() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = "0" ]; then
      chmod 755 "$dir"
      chown postgres "$dir"
    fi
    if ! as_pg "$bindir/initdb" -D "$dir/data" -A trust -U studio --no-sync \
        >"$dir/initdb.log" 2>&1; then
      echo "initdb failed (is $dir reachable by the postgres user?):" >&2
      cat "$dir/initdb.log" >&2
      exit 1
    fi
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
      -o "-h 127.0.0.1 -p $port -k $dir -F -c fsync=off -c full_page_writes=off" start \
      >/dev/null
    echo "postgresql://studio@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: postgres.sh start|stop DIR [PORT]" >&2
    exit 2
    ;;
esac

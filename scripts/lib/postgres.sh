# shellcheck shell=bash
# Throwaway PostgreSQL server for Switchboard's tests.
#
# Source this file (bash), then:
#   pg_find_bindir        sets PG_BINDIR to the directory holding initdb, pg_ctl and
#                         postgres; returns 1 when PostgreSQL is not installed.
#   pg_throwaway_start    initialises a fresh cluster in a temporary directory, starts it
#                         on a free loopback port, creates the database switchboard_test
#                         and exports SWITCHBOARD_TEST_POSTGRES_URL (and
#                         SWITCHBOARD_TEST_POSTGRES_TLS=1 when the server accepts TLS
#                         with a throwaway self-signed certificate).
#   pg_throwaway_stop     stops the server and removes its directory; safe to call more
#                         than once and when nothing was started, so it belongs in an
#                         EXIT trap.
#
# The server trusts every local connection and runs with fsync off: it is for tests only.
# PostgreSQL refuses to run as root, so when root the server runs as the `postgres`
# user; its directory then lives under /tmp, never under root's home.
#
# SWITCHBOARD_PG_BINDIR overrides where the PostgreSQL programs are looked for.

PG_BINDIR=""
PG_THROWAWAY_DIR=""
PG_THROWAWAY_PORT=""

pg_find_bindir() {
    local dir candidate
    if [[ -n ${SWITCHBOARD_PG_BINDIR:-} ]]; then
        dir=$SWITCHBOARD_PG_BINDIR
    elif candidate=$(command -v initdb 2>/dev/null); then
        # Debian's /usr/local/bin entries are symlinks into the versioned directory.
        dir=$(dirname "$(readlink -f "$candidate")")
    else
        dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
            sort -V | tail -n 1 || true)
    fi
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
        PG_BINDIR=$dir
        return 0
    fi
    return 1
}

# Runs a server-side program as the user owning the cluster, from / so that the
# postgres user never needs access to the caller's working directory.
_pg_as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

_pg_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

pg_throwaway_start() {
    local base attempt port options
    if [[ -z $PG_BINDIR ]] && ! pg_find_bindir; then
        echo "PostgreSQL (initdb, pg_ctl) not found" >&2
        return 1
    fi
    if [[ $EUID -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "running as root but there is no 'postgres' user to run the server" >&2
            return 1
        fi
        base=/tmp
    else
        base=${TMPDIR:-/tmp}
    fi
    PG_THROWAWAY_DIR=$(mktemp -d "${base%/}/switchboard-pg.XXXXXX")
    chmod 700 "$PG_THROWAWAY_DIR"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$PG_THROWAWAY_DIR"
    fi

    if ! _pg_as_owner "$PG_BINDIR/initdb" -D "$PG_THROWAWAY_DIR/data" -U postgres \
        --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$PG_THROWAWAY_DIR/initdb.log" 2>&1; then
        echo "initdb failed:" >&2
        cat "$PG_THROWAWAY_DIR/initdb.log" >&2
        return 1
    fi

    # TLS with a throwaway self-signed certificate, so that the tests can prove encrypted
    # connections (sslmode=require) work. Without openssl (or when it fails) the server
    # has no TLS and SWITCHBOARD_TEST_POSTGRES_TLS stays unset: scripts/test then fails
    # unless told to skip that test (SWITCHBOARD_TEST_SKIP=postgres-tls).
    local tls_options=""
    if command -v openssl >/dev/null 2>&1 \
        && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
            -keyout "$PG_THROWAWAY_DIR/server.key" -out "$PG_THROWAWAY_DIR/server.crt" \
            >"$PG_THROWAWAY_DIR/openssl.log" 2>&1; then
        chmod 600 "$PG_THROWAWAY_DIR/server.key"
        if [[ $EUID -eq 0 ]]; then
            chown postgres:postgres "$PG_THROWAWAY_DIR/server.key" "$PG_THROWAWAY_DIR/server.crt"
        fi
        tls_options=" -c ssl=on -c ssl_cert_file='$PG_THROWAWAY_DIR/server.crt'"
        tls_options+=" -c ssl_key_file='$PG_THROWAWAY_DIR/server.key'"
    fi

    # The port is free when picked but could be taken before the server binds it.
    for attempt in 1 2 3; do
        port=$(_pg_free_port)
        options="-c listen_addresses=127.0.0.1 -p $port -k '$PG_THROWAWAY_DIR'"
        options+=" -c fsync=off -c max_connections=200"$tls_options
        if _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_THROWAWAY_DIR/data" \
            -l "$PG_THROWAWAY_DIR/postgres.log" -w -t 30 -o "$options" start >/dev/null; then
            PG_THROWAWAY_PORT=$port
            break
        fi
        echo "PostgreSQL did not start on port $port (attempt $attempt); its log:" >&2
        tail -n 20 "$PG_THROWAWAY_DIR/postgres.log" >&2 || true
    done
    if [[ -z $PG_THROWAWAY_PORT ]]; then
        return 1
    fi

    "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$PG_THROWAWAY_PORT" -U postgres switchboard_test
    export SWITCHBOARD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_THROWAWAY_PORT/switchboard_test"
    if [[ -n $tls_options ]]; then
        export SWITCHBOARD_TEST_POSTGRES_TLS=1
    fi
}

pg_throwaway_stop() {
    local dir=$PG_THROWAWAY_DIR pid
    [[ -n $dir ]] || return 0
    PG_THROWAWAY_DIR=""
    PG_THROWAWAY_PORT=""
    if [[ -f $dir/data/postmaster.pid ]]; then
        if ! _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop \
            >/dev/null 2>&1; then
            _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop \
                >/dev/null 2>&1 || true
        fi
        # Last resort: the postmaster's pid is the first line of postmaster.pid.
        if [[ -f $dir/data/postmaster.pid ]]; then
            pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
            if [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$dir"
}

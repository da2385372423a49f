#!/usr/bin/env bash
# Installs and starts a local PostgreSQL server for the pgstore conformance
# tests, then prints one line on stdout:
#
#	export PROTOGRAIN_POSTGRES_DSN=...
#
# so that `eval "$(bash .ci/postgres.sh)"` configures the tests. Everything
# else it prints goes to stderr, and only when a step fails. Every step is
# idempotent: the package, the server, the role and the database may already
# exist, and running the script twice is harmless.
#
#	bash .ci/postgres.sh        install, start, create role and database
#	bash .ci/postgres.sh stop   stop the server (no-op when it is down)
#
# It expects a Debian machine and root (as CI runs): root runs apt-get and
# becomes the postgres user to create a superuser role named after the
# current user, who then connects over the Unix socket with peer auth.
set -euo pipefail

readonly DB=protograin_test
readonly SOCKET_DIR=/var/run/postgresql
readonly CLUSTER=main

# quiet runs a command, hiding its output unless it fails.
quiet() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		echo "postgres.sh: failed: $*" >&2
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# as_postgres runs a command as the postgres OS user.
as_postgres() {
	if [ "$(id -un)" = postgres ]; then
		"$@"
	else
		runuser -u postgres -- "$@"
	fi
}

install() {
	if command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(version)" ]; then
		return
	fi
	quiet apt-get update
	DEBIAN_FRONTEND=noninteractive quiet apt-get install -y postgresql
}

# version prints the major version of the newest installed server.
version() {
	ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1
}

# status prints "online", "down" or nothing when the cluster does not exist.
status() {
	pg_lsclusters --no-header 2>/dev/null |
		awk -v v="$1" -v c="$CLUSTER" '$1 == v && $2 == c { print $4 }'
}

start() {
	local v=$1
	if [ -z "$(status "$v")" ]; then
		quiet pg_createcluster "$v" "$CLUSTER"
	fi
	if [ "$(status "$v")" != online ]; then
		quiet pg_ctlcluster --skip-systemctl-redirect "$v" "$CLUSTER" start
	fi
	wait_ready
}

# wait_ready waits until the server accepts connections: pg_ctlcluster
# already waits for start-up, this only covers a server started by someone
# else a moment ago. The deadline keeps CI from hanging.
wait_ready() {
	local i
	for i in $(seq 1 60); do
		if pg_isready -q -h "$SOCKET_DIR"; then
			return
		fi
		sleep 0.5
	done
	echo "postgres.sh: server on $SOCKET_DIR not ready after 30s" >&2
	return 1
}

create_role_and_db() {
	local role
	role=$(id -un)
	if [ "$role" = postgres ]; then
		: # the postgres superuser exists already
	elif [ "$(as_postgres psql -h "$SOCKET_DIR" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
		quiet as_postgres psql -h "$SOCKET_DIR" -c "CREATE ROLE \"$role\" SUPERUSER LOGIN"
	fi
	if [ "$(as_postgres psql -h "$SOCKET_DIR" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
		quiet as_postgres createdb -h "$SOCKET_DIR" -O "$role" "$DB"
	fi
}

stop() {
	local v
	v=$(version)
	if [ -n "$v" ] && [ "$(status "$v")" = online ]; then
		quiet pg_ctlcluster --skip-systemctl-redirect "$v" "$CLUSTER" stop
	fi
}

main() {
	case "${1:-start}" in
	start)
		install
		local v
		v=$(version)
		if [ -z "$v" ]; then
			echo "postgres.sh: no server found in /usr/lib/postgresql after install" >&2
			return 1
		fi
		start "$v"
		create_role_and_db
		echo "export PROTOGRAIN_POSTGRES_DSN='postgres:///$DB?host=$SOCKET_DIR'"
		;;
	stop)
		stop
		;;
	*)
		echo "postgres.sh: unknown argument \"$1\"; use no argument to start or \"stop\"" >&2
		return 2
		;;
	esac
}

main "$@"

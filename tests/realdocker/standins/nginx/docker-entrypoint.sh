#!/bin/sh
# nginxinc/docker-nginx-unprivileged docker-entrypoint.sh: for `nginx`/`nginx-debug`, run the
# scripts in /docker-entrypoint.d (sourced *.envsh, executable *.sh), then exec the command.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
	for f in $(find /docker-entrypoint.d/ -follow -type f | sort -V); do
		case "$f" in
			*.envsh) [ ! -r "$f" ] || . "$f" ;;
			*.sh) [ ! -x "$f" ] || "$f" ;;
		esac
	done
fi
exec "$@"

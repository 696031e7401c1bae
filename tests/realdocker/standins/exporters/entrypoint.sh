#!/bin/sh
# ghcr.io/woblerr/pgbackrest's entrypoint.sh (woblerr/docker-pgbackrest) as a non-root user runs:
# no user mapping, no TLS server; it execs its arguments.
exec "$@"

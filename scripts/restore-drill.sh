#!/usr/bin/env bash
# Restore drill for a single Docker host: restore the newest pgBackRest backup of a stack's
# PostgreSQL into a scratch volume, start it on no network, check it, clean up.
#
#   scripts/restore-drill.sh STACK          (make restore-drill STACK=dev)
#
# What it assumes (the program's Docker target, components/platforms/docker.py):
# - the database container is `aixsss-<STACK>-postgres` and is running, from the image built by
#   images/postgres/Dockerfile (postgres + pgbackrest), uid 999;
# - its configuration is a volume mounted at /etc/aixsss (pgbackrest.conf, the CA that signed
#   the object store's certificate), and PGBACKREST_CONFIG points at /etc/aixsss/pgbackrest.conf;
# - its environment carries PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET,
#   POSTGRES_USER (the superuser, `postgres`) and POSTGRES_DB; PGDATA is /var/lib/postgresql/data/pgdata;
# - the superuser logs in through the socket as the image's postgres user (peer authentication:
#   pg_hba.conf and pg_ident.conf in the config volume), with no password; the owner of the data
#   cannot log in at all;
# - the stanza is `aixsss` (override: STANZA=...), and the repository (the object store) is
#   reachable on the networks the database container is on.
#
# Steps: (1) a restore container, from the same image (by id), with the same config volume
# (read-only) and keys, on the database container's networks, runs
#   pgbackrest restore --type=immediate --target-action=promote --archive-mode=off
#                      --recovery-option=restore_command=/bin/false
# into a new scratch volume: the newest backup, consistent from the WAL it holds (archive-copy),
# never archiving into the repository; (2) a scratch PostgreSQL on that volume with
# `--network none` and the stack's pg_hba.conf and pg_ident.conf recovers and is promoted; (3) the check query counts the application's
# migrations and users; (4) `pgbackrest info` from the running database container. The scratch
# containers and volume are removed however the drill ends. Secrets are passed to docker by
# name (`-e NAME`) from this script's environment, never as values on a command line, and are
# never printed.
#
# DOCKER (default `docker`) is the client it calls; tests substitute a recording stand-in.
set -euo pipefail

usage() { echo "usage: $0 STACK" >&2; exit 2; }
[ $# -eq 1 ] || usage
stack=$1
[[ $stack =~ ^[a-z0-9][a-z0-9-]*$ ]] || usage

DOCKER=${DOCKER:-docker}
STANZA=${STANZA:-aixsss}
PGDATA_PATH=/var/lib/postgresql/data/pgdata
CONFIG_DIR=/etc/aixsss
RECOVERY_TIMEOUT=${RECOVERY_TIMEOUT:-300}
# What the restored copy must answer: the application's applied migrations and its users
# (override CHECK_QUERY for another schema; it runs with ON_ERROR_STOP, so a missing table fails).
DEFAULT_CHECK_QUERY='SELECT (SELECT count(*) FROM "_prisma_migrations" WHERE finished_at IS NOT NULL) AS migrations_applied,
       (SELECT count(*) FROM "User") AS users, pg_last_wal_replay_lsn() AS replayed_to, now() AS checked_at'
CHECK_QUERY=${CHECK_QUERY:-$DEFAULT_CHECK_QUERY}
# The options tests/backup/test_pitr.py proves restore with no repository access.
RESTORE_OPTIONS=(--type=immediate --target-action=promote --archive-mode=off
  --recovery-option=restore_command=/bin/false)

source_container="aixsss-${stack}-postgres"
run_id="$(date -u +%Y%m%d%H%M%S)-$$"
scratch_volume="aixsss-${stack}-restore-drill-${run_id}"
restorer="aixsss-${stack}-restore-drill-${run_id}-restore"
scratch="aixsss-${stack}-restore-drill-${run_id}-postgres"

log() { printf 'restore-drill: %s\n' "$*" >&2; }

cleanup() {
  local status=$?
  "$DOCKER" rm -f "$restorer" "$scratch" >/dev/null 2>&1 || true
  "$DOCKER" volume rm -f "$scratch_volume" >/dev/null 2>&1 || true
  log "removed $restorer, $scratch and volume $scratch_volume"
  exit "$status"
}

# The value of NAME in the source container's environment (empty if unset).
container_env() {
  "$DOCKER" inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$source_container" |
    sed -n "s/^$1=//p" | head -n 1
}

main() {
  local state image config_volume networks network
  state=$("$DOCKER" inspect --format '{{.State.Running}}' "$source_container" 2>/dev/null) ||
    { log "no container $source_container (is STACK=$stack deployed on this Docker host?)"; exit 1; }
  [ "$state" = true ] || { log "$source_container is not running"; exit 1; }
  image=$("$DOCKER" inspect --format '{{.Image}}' "$source_container")
  config_volume=$("$DOCKER" inspect --format \
    "{{range .Mounts}}{{if eq .Destination \"$CONFIG_DIR\"}}{{.Name}}{{end}}{{end}}" "$source_container")
  [ -n "$config_volume" ] || { log "$source_container has no volume at $CONFIG_DIR"; exit 1; }
  # shellcheck disable=SC2016  # a Go template for docker, not a shell expansion
  networks=$("$DOCKER" inspect --format '{{range $name, $_ := .NetworkSettings.Networks}}{{println $name}}{{end}}' \
    "$source_container" | sed '/^$/d')
  network=$(printf '%s\n' "$networks" | head -n 1)
  [ -n "$network" ] || { log "$source_container is on no network"; exit 1; }

  # Secrets into this process's environment only; docker receives them by name.
  PGBACKREST_REPO1_S3_KEY=$(container_env PGBACKREST_REPO1_S3_KEY)
  PGBACKREST_REPO1_S3_KEY_SECRET=$(container_env PGBACKREST_REPO1_S3_KEY_SECRET)
  PGUSER=$(container_env POSTGRES_USER)
  PGDATABASE=$(container_env POSTGRES_DB)
  PGBACKREST_CONFIG=$(container_env PGBACKREST_CONFIG)
  PGBACKREST_CONFIG=${PGBACKREST_CONFIG:-$CONFIG_DIR/pgbackrest.conf}
  export PGBACKREST_REPO1_S3_KEY PGBACKREST_REPO1_S3_KEY_SECRET PGUSER PGDATABASE PGBACKREST_CONFIG
  for name in PGBACKREST_REPO1_S3_KEY PGBACKREST_REPO1_S3_KEY_SECRET PGUSER PGDATABASE; do
    [ -n "${!name}" ] || { log "$source_container has no $name in its environment"; exit 1; }
  done

  trap cleanup EXIT
  "$DOCKER" volume create --label aixsss.restore-drill=true "$scratch_volume" >/dev/null
  # The official image's PGDATA parent belongs to postgres; a new volume copies that ownership.
  log "restoring the newest backup of stanza $STANZA from $image into volume $scratch_volume"
  # shellcheck disable=SC2016  # $1 and $@ belong to the bash inside the container
  "$DOCKER" run --name "$restorer" --user 999:999 --network "$network" --read-only --tmpfs /tmp \
    --mount "type=volume,source=$config_volume,target=$CONFIG_DIR,readonly" \
    --mount "type=volume,source=$scratch_volume,target=/var/lib/postgresql/data" \
    -e PGBACKREST_CONFIG -e PGBACKREST_REPO1_S3_KEY -e PGBACKREST_REPO1_S3_KEY_SECRET \
    --entrypoint bash "$image" -c 'install -d -m 0700 "$1" && exec pgbackrest "${@:2}"' restore-drill \
    "$PGDATA_PATH" "--stanza=$STANZA" "--pg1-path=$PGDATA_PATH" --spool-path=/tmp/spool "${RESTORE_OPTIONS[@]}" restore
  "$DOCKER" rm "$restorer" >/dev/null

  log "starting the restored copy on no network"
  # No repository keys here: the copy recovers from the WAL its backup holds, and archives nothing.
  # It runs on PGDATA's initdb defaults (max_connections 100), not the stack's configuration; with
  # hot standby on, PostgreSQL aborts a recovery whose primary had more ("insufficient parameter
  # settings", e.g. prod's database.maxConnections 200). Off, it only refuses connections until
  # promoted, which the loop below waits for. Its pg_hba.conf and pg_ident.conf are the stack's:
  # the superuser has no password (secrets.rotation, README), and logs in as the postgres user (peer).
  "$DOCKER" run -d --name "$scratch" --user 999:999 --network none --tmpfs /tmp --tmpfs /var/run/postgresql \
    --mount "type=volume,source=$scratch_volume,target=/var/lib/postgresql/data" \
    --mount "type=volume,source=$config_volume,target=$CONFIG_DIR,readonly" \
    -e PGDATA="$PGDATA_PATH" "$image" postgres -c hot_standby=off \
    -c "hba_file=$CONFIG_DIR/pg_hba.conf" -c "ident_file=$CONFIG_DIR/pg_ident.conf" >/dev/null

  local deadline=$((SECONDS + RECOVERY_TIMEOUT)) in_recovery=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    in_recovery=$("$DOCKER" exec -e PGUSER -e PGDATABASE "$scratch" \
      psql -X -A -t -v ON_ERROR_STOP=1 -c 'SELECT pg_is_in_recovery()' 2>/dev/null) || in_recovery=""
    [ "$in_recovery" = f ] && break
    sleep 2
  done
  if [ "$in_recovery" != f ]; then
    log "the restored copy did not finish recovery within ${RECOVERY_TIMEOUT}s; its log:"
    "$DOCKER" logs --tail 50 "$scratch" >&2 || true
    exit 1
  fi

  log "check query on the restored copy"
  "$DOCKER" exec -e PGUSER -e PGDATABASE "$scratch" psql -X -v ON_ERROR_STOP=1 -c "$CHECK_QUERY"

  log "pgbackrest info (from $source_container)"
  "$DOCKER" exec "$source_container" pgbackrest "--stanza=$STANZA" info
  log "drill passed: the newest backup of $stack restores and answers"
}

main

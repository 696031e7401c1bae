#!/bin/sh
# minio/minio dockerscripts/docker-entrypoint.sh with Silo's binary name: any arguments not
# starting with `silo` get `silo` prepended (the deprecated MINIO_USERNAME user switch is not
# mirrored).
if [ "${1}" != "silo" ] && [ -n "${1}" ]; then
	set -- silo "$@"
fi
exec "$@"

#!/bin/sh
# minio/minio dockerscripts/docker-entrypoint.sh: any arguments not starting with `minio` get
# `minio` prepended (the deprecated MINIO_USERNAME user switch is not mirrored).
if [ "${1}" != "minio" ] && [ -n "${1}" ]; then
	set -- minio "$@"
fi
exec "$@"

#!/bin/sh
# docker-library/redis 7.2/debian/docker-entrypoint.sh (commit e920499), unchanged in behaviour:
# an option or a *.conf first argument means redis-server; root steps down to redis with gosu.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec gosu redis "$0" "$@"
fi

um="$(umask)"
if [ "$um" = '0022' ]; then
	umask 0077
fi

exec "$@"

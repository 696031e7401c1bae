"""Routes on Docker (spec.Routes): the proxy takes an upstream's new instances once they are healthy.

Docker's DNS lists a container under its names and aliases from its start to its removal, with
its address. Following a side-by-side replacement by name alone therefore sends requests to a
new instance before it listens and, for up to a lookup's lifetime, to an old address that is
gone; and nginx fails a request outright when its address list changes between two tries of it
(`rrp->config` in ngx_http_upstream_get_round_robin_peer). Measured upgrades lost requests that
way. So the switch is explicit, as Kamal's proxy does it (`kamal-proxy deploy` waits for the new
target's health check, then switches): a small container of the proxy's image writes the
instances of a new set into a volume the proxy reads, with each one's health-check URL; the
proxy checks every new instance from where it will send requests, and once all answer it
reloads: its new workers take only the new set, its old workers finish what they started. The
route container is healthy once the proxy says it loaded them, and `pulumi up` deletes the old
set only at its end, after every create.

Files, in the proxy's routes volume (Routes.directory):
- `announced/<service>/instances.conf`, written by its route container: `# routes <service>
  <digest>`, a `# check <url>` line per instance, then one Routes.line per instance;
- `live/<service>/*.conf`, what the proxy includes: the checked copies, written by its watcher;
- `loaded`: the `# routes` lines of what is live, which the watcher writes after each reload.
"""

from __future__ import annotations

import hashlib
import shlex

from components.spec import Routes

INSTANCES = "instances.conf"
# Where the route containers write (`<service>/instances.conf`), and what the proxy includes
# (`<service>/*.conf`): only the watcher writes there, and only what it checked.
ANNOUNCED = "announced"
LIVE = "live"
LOADED = "loaded"
# How often the proxy looks at its routes: a new set waits this long at most to be taken.
WATCH_INTERVAL_SECONDS = 1
# nginx looks a `resolve` name up only after a reload, so a reload onto new names alone would
# leave them without an address for a moment (its zone copies only addresses the old workers
# knew: ngx_http_upstream_zone_preresolve). So the new set is first added beside the old one, and
# the old one is dropped after this long, once the new names resolved.
RESOLVE_SECONDS = 2


def watching(routes: Routes, command: list[str]) -> list[str]:
    """The proxy's entrypoint: its ``command``, beside a loop that takes each upstream's announced
    routes once every instance they add answers its check (Routes.check): it adds them beside the
    live ones, reloads (Routes.reload), drops the old ones after RESOLVE_SECONDS, reloads again,
    then records what is live (LOADED). A check that fails is tried again the next round; routes
    the proxy refuses are taken out again and not retried until they change. The proxy only ever
    loads what was checked, whenever it loads (a restart, another reload)."""
    check, reload = shlex.join(routes.check), shlex.join(routes.reload)
    script = f"""
routes=$1; shift
live() {{ cat "$routes"/{LIVE}/*/*.conf 2>/dev/null; }}
record() {{ live | grep "^# routes " > "$routes/.{LOADED}.next"; mv -f "$routes/.{LOADED}.next" "$routes/{LOADED}"; }}
same() {{ [ -f "$2" ] && [ "$(cat "$1")" = "$(cat "$2")" ]; }}
note() {{ echo "routes: $*" >&2; }}
checked() {{
  grep "^# check " "$1" | while read -r _ _ url; do
    live | grep -qxF "# check $url" || {check} "$url" 2>/dev/null || {{ echo "$url"; exit 1; }}
  done
}}
take() {{
  d="$routes/{LIVE}/$1"; mkdir -p "$d"
  cp "$2" "$d/.next" && mv -f "$d/.next" "$d/next.conf"
  if ! {reload}; then rm -f "$d/next.conf"; {reload}; return 1; fi
  sleep {RESOLVE_SECONDS}
  mv -f "$d/next.conf" "$d/{INSTANCES}" && {reload}
}}
record
(
  while sleep {WATCH_INTERVAL_SECONDS}; do
    for f in "$routes"/{ANNOUNCED}/*/{INSTANCES}; do
      [ -f "$f" ] || continue
      s=${{f%/{INSTANCES}}}; s=${{s##*/}}; staged="$routes/.staged.$s"
      cp "$f" "$staged" || continue
      same "$staged" "$routes/{LIVE}/$s/{INSTANCES}" && continue
      same "$staged" "$routes/.refused.$s" && continue
      if failing=$(checked "$staged"); [ -n "$failing" ]; then
        same "$staged" "$routes/.waiting.$s" ||
          note "$s: waiting for its new instances to answer: $failing: $({check} "$failing" 2>&1)"
        cp "$staged" "$routes/.waiting.$s"; continue
      fi
      if take "$s" "$staged"; then note "$s: took $(grep "^# routes " "$staged")"
      else note "$s: nginx refused its routes"; cp "$staged" "$routes/.refused.$s"; fi
      record
    done
  done
) &
exec "$@"
"""
    return ["/bin/sh", "-c", script, "routes", routes.directory, *command]


def file_for(routes: Routes, service: str, instances: list[tuple[str, str]]) -> str:
    """``service``'s routes file for ``instances`` (each its host:port and its check's URL). Its
    first line, `# routes <service> <digest>`, is what LOADED records once the proxy took it."""
    lines = [f"# check {url}" for _, url in instances] + [routes.line.format(address=a) for a, _ in instances]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return "\n".join([f"# routes {service} {digest}", *lines, ""])


def announcing(routes: Routes, service: str) -> list[str]:
    """The route container's entrypoint: it writes its file (the first argument) in one rename,
    then idles until it is removed; its health check waits for the proxy's LOADED."""
    folder = f"{routes.directory}/{ANNOUNCED}/{service}"
    script = (
        "set -eu; "
        f"mkdir -p {shlex.quote(folder)}; "
        f'printf "%s" "$1" > {shlex.quote(folder)}/.next; '
        f"mv -f {shlex.quote(folder)}/.next {shlex.quote(folder)}/{INSTANCES}; "
        # The proxy's image may stop with SIGQUIT (nginx's): any stop ends the idling.
        "trap 'exit 0' TERM INT QUIT; "
        'while :; do sleep 3600 & wait "$!"; done'
    )
    return ["/bin/sh", "-c", script, "announce"]


def loaded_check(routes: Routes, service: str) -> list[str]:
    """Healthy once the proxy has loaded the file the route container wrote (its `# routes` line,
    read back from it: the check needs no value known only at deploy time)."""
    announced = f"{routes.directory}/{ANNOUNCED}/{service}/{INSTANCES}"
    loaded = f"{routes.directory}/{LOADED}"
    script = f'mark=$(head -n 1 {shlex.quote(announced)}) && [ -n "$mark" ] && grep -qxF "$mark" {shlex.quote(loaded)}'
    return ["/bin/sh", "-c", script]

"""The Docker platform: one host, networks per zone, hardened containers with healthchecks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.conf import drain_front
from components.conf.nginx_base import workers_for
from components.config import Resources, StackConfig
from components.monitoring import DOCKER_METRICS_NETWORK, SCRAPER, MonitoringSpec, docker_metrics_network
from components.platforms import docker_routes
from components.platforms.base import FLOW_KEY, PORTS_KEY, Placement, flows_of, ports_record
from components.platforms.docker_jobs import succeeded
from components.spec import (
    CONFIG_DIR,
    Companion,
    ConfigFile,
    Exporter,
    Handover,
    Probe,
    Routes,
    Security,
    ServiceSpec,
    Sidecar,
    Volume,
    Zone,
)

ACME_UID = 65532  # lego needs no privileges: HTTP-01 goes through the edge's webroot
BOOTSTRAP_DIR = f"{CONFIG_DIR}/bootstrap"
LABELS = {"app.kubernetes.io/part-of": "aixsss", "managed-by": "pulumi"}
ROLE_KEY, VOLUME_OWNER_ROLE, CONFIG_CARRIER_ROLE = "aixsss.io/role", "volume-owner", "config-carrier"
# A service's sidecar owns the network namespace its containers join (ServiceSpec.sidecars).
SIDECAR_ROLE = "sidecar"
# A second process of a service's image on its volumes (ServiceSpec.companions).
COMPANION_ROLE = "companion"
# A metrics exporter in a service's network namespace (ServiceSpec.exporters).
EXPORTER_ROLE = "exporter"
# On each service container: the id of the container that filled its config volume. Labels are
# ForceNew in the provider, so new files (a renewed certificate, a changed nginx.conf) replace
# the service container, which then starts on them.
CONFIG_KEY = "aixsss.io/config"
# Docker publishes nothing from a container whose networks are all internal, so a container that
# publishes ports also joins a non-internal network of its own, `<service>-published`, shared
# with no other service; every zone network then stays internal except egress (README: what
# Docker isolates).
PUBLISHED = "published"
CONFIG_VOLUME_ROLE = "config"
LOG_OPTS = {"max-size": "10m", "max-file": "3"}
# A service replaced without failing work (spec.Handover) gets a revision: random bytes, new
# whenever anything its containers are made of changes (pulumi-random's `keepers`). Each of its
# container and config volume names ends in `.<revision>`, so a change creates a whole new set
# beside the old one (delete_before_replace=False overrides pulumi-docker's delete-first), and
# `pulumi up` deletes the old set after every create, dependents first.
REVISION_BYTES = 4
# What the revision covers besides the spec, the images and the records of the flows and ports on
# its containers: the code that turns specs into containers (this module, the spec and the records'
# formats). A new default there changes containers whose spec did not; replaced under their old
# names they would collide with themselves, so any change to it starts a new revision. (A
# pulumi-docker upgrade that forces replacements is not seen here: `pulumi up --replace` of the
# revisions then, README: Releases and rollback.)
PLATFORM_SOURCE = hashlib.sha256(
    b"".join(
        (Path(__file__).parent / name).read_bytes()
        for name in ("docker.py", "base.py", "../spec.py", "../monitoring.py", "../conf/drain_front.py")
    )
).hexdigest()
# The draining front (spec.Handover, drains_itself False): its config, in its config volume.
FRONT = "front"
FRONT_CONF = f"{CONFIG_DIR}/front.conf"
FRONT_UID = 101  # nginx-unprivileged, the edge's image
FRONT_ROLE = "drain-front"
# The container that tells a proxy (spec.Routes) the instances of one of its upstreams.
ROUTES_ROLE = "routes"


def _described(value: object) -> object:
    """A spec as plain data and Inputs (Output.from_input resolves them): what makes its
    containers. Resources in it only order things (Sidecar.after) and are left out."""
    if isinstance(value, pulumi.Resource):
        return None
    if isinstance(value, Resources):
        # A spec's resources are its whole settings section (api.maxReplicas, cache.storageGb…):
        # only the limits make containers; the rest would start revisions that change nothing.
        return {"cpu_millis": value.cpu_millis, "memory_mb": value.memory_mb}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _described(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        items = cast(dict[object, object], value)
        return {str(k): _described(v) for k, v in items.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(str(v) for v in cast(set[object], value))
    if isinstance(value, (list, tuple)):
        return [_described(v) for v in cast(list[object], value)]
    return value


def _with_markers(value: object, leaves: list[pulumi.Output[Any]]) -> object:
    """``value`` with each Input that is not plain data replaced by its index in ``leaves``."""
    if isinstance(value, pulumi.Output):
        leaves.append(cast(pulumi.Output[Any], value))
        return {"output": len(leaves) - 1}
    if isinstance(value, dict):
        items = cast(dict[str, object], value)
        return {k: _with_markers(v, leaves) for k, v in items.items()}
    if isinstance(value, list):
        return [_with_markers(v, leaves) for v in cast(list[object], value)]
    return value


def _service_check(command: list[str], probe: Probe | None) -> docker.ContainerHealthcheckArgs:
    """A service's health check on Docker: ``command``, with its probe's start period."""
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", *command],
        interval="10s",
        timeout="5s",
        retries=5,
        start_period=f"{probe.start_period_seconds if probe else 20}s",
        start_interval="2s",
    )


def _digest(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _hardened(**args: Any) -> docker.ContainerArgs:
    """Every container's defaults: read-only root, no capabilities, no privilege gain, rotated logs.

    Callers add what their container needs (a capability, a writable volume); nothing here is
    repeated per container. pulumi-docker has no pids limit to set (README: pids limit).
    """
    defaults: dict[str, Any] = {
        "read_only": True,
        "capabilities": docker.ContainerCapabilitiesArgs(drops=["ALL"]),
        "security_opts": ["no-new-privileges:true"],
        "log_driver": "json-file",
        "log_opts": LOG_OPTS,
    }
    return docker.ContainerArgs(**(defaults | args))


def _labels(service: str, records: dict[str, pulumi.Input[str]] | None = None) -> list[docker.ContainerLabelArgs]:
    values = {**LABELS, "aixsss.service": service, **(records or {})}
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in values.items()]


def _user_of(security: Security) -> str | None:
    uid, gid = security.run_as_user, security.run_as_group
    return None if uid is None else f"{uid}:{gid or uid}"


def _joining(owner: docker.Container) -> dict[str, Any]:
    """Join ``owner``'s network namespace (its networks, ports and loopback)."""
    return {"network_mode": pulumi.Output.concat("container:", owner.id)}


def _user(spec: ServiceSpec) -> str | None:
    return _user_of(spec.security)


def _limits(memory_mb: int, cpu_millis: int) -> dict[str, Any]:
    """A container's memory (no swap on top of it) and CPUs, as the provider takes them."""
    return {"memory": memory_mb, "memory_swap": memory_mb, "cpus": f"{cpu_millis / 1000:g}"}


def _mounts(spec: ServiceSpec, volumes: list[docker.Volume]) -> list[docker.ContainerVolumeArgs]:
    """``spec``'s volumes at their paths (the service's container, and its companions)."""
    return [
        docker.ContainerVolumeArgs(volume_name=vol.name, container_path=v.path)
        for v, vol in zip(spec.volumes, volumes, strict=True)
    ]


def _envs(spec: ServiceSpec) -> pulumi.Output[list[str]]:
    """``NAME=value`` for the container: the plain env, then the secret env (the list stays secret)."""
    return _env_list(spec.env, spec.secret_env)


def _env_list(env: dict[str, str], secret_env: dict[str, pulumi.Output[str]]) -> pulumi.Output[list[str]]:
    return pulumi.Output.all(*(pulumi.Output.concat(k, "=", v) for k, v in secret_env.items())).apply(
        lambda secret: [f"{k}={v}" for k, v in env.items()] + list(secret)
    )


class DockerPlatform(pulumi.ComponentResource):
    name = "docker"
    namespace_name = None  # no namespaces (Platform.namespace_name)
    # One host: PostgreSQL is the spec's container, a single instance.
    runs_postgres_clusters = False

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aixsss:platform:Docker", name, None, opts)
        self._config = config
        self._prefix = f"aixsss-{config.environment}"
        self._specs: dict[str, ServiceSpec] = {}
        self._published: dict[str, docker.Network] = {}
        self._metrics: dict[str, docker.Network] = {}
        self._volumes: dict[tuple[str, str], docker.Volume] = {}
        # Services replaced side by side (spec.Handover): their revision (REVISION_BYTES).
        self._revisions: dict[str, random.RandomId] = {}
        # The images of sidecars, exporters and fronts, by service and image reference.
        self._part_images: dict[tuple[str, str], docker.RemoteImage] = {}
        # What a proxy's routes name (spec.Routes), by service: the namespace owner of each
        # instance (its container name is the instance's DNS name), the containers its check
        # goes through (the service's own, and the api's fronts), its port and its probe's path.
        self._instances: dict[str, tuple[list[docker.Container], list[docker.Container], int, str]] = {}
        # Run-once containers: what depends on one waits for its exit code 0 (docker_jobs).
        self._jobs: list[docker.Container] = []
        self.provider = docker.Provider("docker", host=config.docker.host, opts=pulumi.ResourceOptions(parent=self))
        self._opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        # Only the egress network routes out; backend and frontend are internal (no route out).
        self.networks: dict[Zone, docker.Network] = {
            zone: self._network(str(zone), internal=zone is not Zone.EGRESS) for zone in Zone
        }
        self.register_outputs({})

    def _joined(self, spec: ServiceSpec) -> dict[str, docker.Network]:
        """The networks ``spec``'s containers join, by name: its zones, a metrics network of its
        own when exporters share its namespace, and a network of its own when it publishes ports
        (each created once per service)."""
        joined = {f"{self._prefix}-{zone}": self.networks[zone] for zone in sorted(spec.zones)}
        if spec.exporters:
            # Prometheus scrapes the exporters in this namespace there; no other service is on it.
            joined[docker_metrics_network(self._config.environment, spec.name)] = self._metrics_network(spec.name)
        if any(p.published for p in spec.ports):
            if spec.name not in self._published:
                self._published[spec.name] = self._network(f"{spec.name}-{PUBLISHED}", internal=False)
            joined[f"{self._prefix}-{spec.name}-{PUBLISHED}"] = self._published[spec.name]
        return joined

    def _metrics_network(self, service: str) -> docker.Network:
        """``service``'s internal metrics network, which the operator's Prometheus joins."""
        if service not in self._metrics:
            self._metrics[service] = self._network(f"{service}-{DOCKER_METRICS_NETWORK}", internal=True)
        return self._metrics[service]

    def _network(self, name: str, *, internal: bool) -> docker.Network:
        return docker.Network(
            f"{name}-network",
            name=f"{self._prefix}-{name}",
            driver="bridge",
            internal=internal,
            labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in LABELS.items()],
            opts=self._opts,
        )

    def monitor(self, spec: MonitoringSpec, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Nothing to declare: the exporters are placed with their services (``_exporters``) and
        the operator's Prometheus, which joins the metrics networks, reads the scrape configuration
        and the rule file from the stack's outputs (``spec.scrape_configs``, ``spec.rules``)."""
        return []

    # nginx re-resolves upstream names through Docker's embedded DNS server, which answers
    # container names and aliases on user-defined networks (docs.docker.com, "Container networking").
    resolver = "127.0.0.11"
    announces_routes = True  # Platform.announces_routes

    def resolvable_name(self, service: str) -> str:
        return service

    def dns_names(self, service: str) -> list[str]:
        # Containers find each other by their network alias (the service name).
        return [service, "localhost"]

    def build_image(
        self,
        name: str,
        context: str,
        dockerfile: str,
        target: str | None,
        version: str,
        args: dict[str, str] | None = None,
    ) -> pulumi.Output[str]:
        """Build ``target`` on the Docker host that runs the stack, which needs no registry; the tag
        carries the source's version, so new sources are a new reference and replace the containers
        that use it (a rebuilt image under an unchanged name would not: pulumi-docker's Image is
        identified by its name). The image stays on the host; pulumi-docker never deletes it."""
        built = docker.Image(
            f"{name}-build",
            image_name=f"{self._prefix}/aixsss-{name}:{version}",
            build=docker.DockerBuildArgs(
                context=context,
                dockerfile=dockerfile,
                target=target,
                args=args,
                platform=self._config.app.platform,
            ),
            skip_push=True,
            opts=self._opts,
        )
        return built.image_name

    def _child_opts(
        self,
        parent: pulumi.Resource,
        depends_on: list[pulumi.Resource],
        *,
        stateful: bool = False,
        service: str | None = None,
    ) -> pulumi.ResourceOptions:
        protect = stateful and self._config.protect_data
        gated = [next((succeeded(job) for job in self._jobs if job is d), d) for d in depends_on]
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.provider,
            depends_on=gated,
            protect=protect,
            retain_on_delete=protect,
            # A revisioned service's new containers and volumes carry new names: created first.
            delete_before_replace=False if service in self._revisions else None,
        )

    def _physical(self, service: str, base: str) -> pulumi.Input[str]:
        """The Docker name of ``service``'s container or volume ``base``: `<prefix>-<base>`, and
        `.<revision>` after it for a service replaced side by side (REVISION_BYTES)."""
        revision = self._revisions.get(service)
        if revision is None:
            return f"{self._prefix}-{base}"
        name = f"{self._prefix}-{base}"
        return revision.hex.apply(lambda hex_: f"{name}.{hex_}")

    def _side_by_side(self, spec: ServiceSpec) -> Handover | None:
        """``spec``'s handover where Docker can run two sets at once: not for a service that
        publishes host ports (the new set could not bind them while the old one holds them; the
        edge is replaced stop-first here, README: Releases and rollback), nor one with data."""
        if spec.handover is None or spec.run_once or spec.stateful or any(p.published for p in spec.ports):
            return None
        return spec.handover

    def _part_image(
        self, spec: ServiceSpec, part: str, image_name: pulumi.Input[str], parent: pulumi.Resource
    ) -> docker.RemoteImage:
        """The image of ``spec``'s ``part``: one resource per image the service's parts share (the
        api's front and its tunnel both run the edge's nginx)."""
        key = (spec.name, image_name if isinstance(image_name, str) else f"{spec.name}-{part}")
        if key not in self._part_images:
            self._part_images[key] = docker.RemoteImage(
                f"{spec.name}-{part}-image",
                name=image_name,
                keep_locally=True,
                opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
            )
        return self._part_images[key]

    def _revision(
        self, spec: ServiceSpec, images: list[docker.RemoteImage], extra: str, parent: pulumi.Resource
    ) -> random.RandomId:
        """New random bytes whenever the spec, an image it runs (by id: a new image under the
        same tag too), ``extra`` (the front's config) or this module changes. The digest covers
        secrets (the environment), so the keepers stay secret; the bytes are random, not derived."""
        # The plain part is hashed here; the Outputs in it (images, secrets, certificates) are
        # gathered into one Output.all instead of an Output per nested dict and list, which
        # would cost the evaluation (issue 14: tests/test_evaluation_time.py).
        leaves: list[pulumi.Output[Any]] = []
        plain = _with_markers(
            {
                "spec": _described(spec),
                "extra": extra,
                # Labels on its containers from other services' specs (the ports it reaches).
                "flows": json.dumps([f.describe() for f in flows_of(spec, self._specs)]),
                "ports": ports_record(spec),
                "platform": PLATFORM_SOURCE,
            },
            leaves,
        )
        leaves += [i.image_id for i in images]
        shape = _digest(plain)
        content = pulumi.Output.all(*leaves).apply(lambda values: _digest([shape, values]))
        return random.RandomId(
            f"{spec.name}-revision",
            byte_length=REVISION_BYTES,
            keepers={"content": pulumi.Output.secret(content)},
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def place(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement:
        handover = self._side_by_side(spec)
        front_conf: str | None = None
        if handover is not None and not handover.drains_itself:
            # The app cannot drain itself: a front takes its port, and the app moves behind it.
            assert handover.app_port is not None and spec.ports, f"{spec.name}: a draining front needs the app's port"
            front_conf = drain_front.render(
                drain_front.FrontSettings(
                    listen_port=spec.ports[0].port,
                    app_port=handover.app_port,
                    read_timeout_seconds=handover.drain_seconds,
                    workers=workers_for(spec.resources.cpu_millis),
                )
            )
            # Its config rides with the app's (one carrier and volume for both: fewer resources to
            # evaluate, issue 14), which it mounts read-only as the app does.
            spec = dataclasses.replace(
                spec,
                env={**spec.env, handover.app_port_env: str(handover.app_port)},
                files=[*spec.files, ConfigFile(FRONT_CONF, front_conf)],
            )
        self._specs[spec.name] = spec
        image = docker.RemoteImage(
            f"{spec.name}-image",
            name=spec.image,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        if handover is not None:
            parts = [self._part_image(spec, s.name, s.image, parent) for s in spec.sidecars]
            parts += [self._part_image(spec, e.name, e.image, parent) for e in spec.exporters]
            if front_conf is not None:
                parts.append(self._part_image(spec, FRONT, self._config.images.edge, parent))
            self._revisions[spec.name] = self._revision(spec, [image, *parts], front_conf or "", parent)
        volumes = [self._volume(spec, v, parent) for v in spec.volumes]
        owned = [vol for v, vol in zip(spec.volumes, volumes, strict=True) if v.shared_from is None]
        prepare = self._volume_owner(spec, image, volumes, parent)
        config_volume, carrier = self._config_carrier(spec.name, spec.name, image, spec.files, _user(spec), parent)
        front_parts = None
        if front_conf is not None:
            front_parts = (self._part_image(spec, FRONT, self._config.images.edge, parent), config_volume, carrier)
        if carrier is not None:
            prepare.append(carrier)
        extra: list[pulumi.Resource] = []
        routes_mounts: list[docker.ContainerVolumeArgs] = []
        routes = spec.routes
        if routes is not None:
            routes_volume, routes_owner = self._routes_volume(spec, routes, image, parent)
            routes_mounts = [
                docker.ContainerVolumeArgs(volume_name=routes_volume.name, container_path=routes.directory)
            ]
            prepare.append(routes_owner)
            assert spec.command, f"{spec.name}: a proxy with routes names its command (the watcher runs it)"
            spec = dataclasses.replace(spec, command=docker_routes.watching(routes, spec.command))
        acme_volumes: list[docker.ContainerVolumeArgs] = []
        if spec.acme is not None:
            acme_volumes, acme_client = self._acme_client(spec, parent)
            extra.append(acme_client)
            depends_on = [*depends_on, acme_client]
        count = 1 if spec.run_once else spec.replicas
        config_mount = []
        if config_volume is not None:
            config_mount = [
                docker.ContainerVolumeArgs(volume_name=config_volume.name, container_path=CONFIG_DIR, read_only=True)
            ]
        sidecar_parts = [
            self._shared_parts(spec, sidecar.name, sidecar.image, sidecar.security, sidecar.files, parent)
            for sidecar in spec.sidecars
        ]
        containers: list[docker.Container] = []
        # Draining fronts (spec.Handover): healthy when the app answers through them.
        fronts: list[docker.Container] = []
        # Each replica's network namespace: its first sidecar's, else its own (exporters join it).
        namespaces: list[tuple[str, docker.Container]] = []
        for index in range(count):
            name = self._container_name(spec, index, count)
            # The first sidecar owns the namespace: it joins the service's networks and carries
            # its name, and it is up before the service starts (as a Kubernetes native sidecar).
            owner: docker.Container | None = None
            for sidecar, parts in zip(spec.sidecars, sidecar_parts, strict=True):
                made = self._sidecar(
                    spec,
                    sidecar,
                    parts,
                    name,
                    owner,
                    parent,
                    [*sidecar.after, *prepare],
                )
                owner = owner or made
                extra.append(made)
            containers.append(
                self._container(
                    spec,
                    image,
                    volumes,
                    [*acme_volumes, *config_mount, *routes_mounts],
                    carrier,
                    name,
                    owner,
                    parent,
                    depends_on + prepare,
                    awaited=front_parts is None,
                )
            )
            namespaces.append((name, owner or containers[-1]))
            if front_parts is not None and handover is not None:
                fronts.append(
                    self._front(spec, handover, front_parts, name, owner or containers[-1], containers[-1], parent)
                )
        announcers: list[docker.Container] = []
        if routes is not None:
            announcers = self._announcers(spec, routes, image, routes_mounts, list(containers), parent)
            extra += announcers
        if spec.ports and not spec.run_once:
            path = spec.probe.http_path if spec.probe is not None and spec.probe.http_path else "/"
            instances = [*containers, *fronts]
            self._instances[spec.name] = ([o for _, o in namespaces], instances, spec.ports[0].port, path)
        for parts in sidecar_parts:
            extra += [r for r in parts if r is not None]
        for exporter in spec.exporters:
            extra += self._exporters(spec, exporter, namespaces, parent)
        for companion in spec.companions:
            assert count == 1, f"{spec.name}: a companion shares the volumes of a single container"
            extra.append(self._companion(spec, companion, image, volumes, config_mount, carrier, containers[0], parent))
        networks = list(self._joined(spec))
        exposed = [f"{p.host_ip}:{p.published}->{p.port}" for p in spec.ports if p.published]
        return Placement(
            spec=spec,
            # A proxy with routes is ready once it took its upstreams' instances.
            ready=[*(fronts or containers), *announcers],
            networks=networks,
            exposed=exposed,
            non_root=spec.security.run_as_user not in (None, 0),
            read_only_root=spec.security.read_only_root,
            resources=[
                image,
                *owned,
                *([config_volume] if config_volume else []),
                *prepare,
                *containers,
                *fronts,
                *extra,
            ],
        )

    def _volume(self, spec: ServiceSpec, volume: Volume, parent: pulumi.Resource) -> docker.Volume:
        """``spec``'s volume: a new one, or the one of the service it shares (Volume.shared_from)."""
        if volume.shared_from is not None:
            shared = self._volumes.get((volume.shared_from, volume.name))
            if shared is None:
                raise ValueError(f"{spec.name}: no volume {volume.name!r} of {volume.shared_from!r} placed before it")
            return shared
        made = docker.Volume(
            f"{spec.name}-{volume.name}",
            name=f"{self._prefix}-{spec.name}-{volume.name}",
            labels=[docker.VolumeLabelArgs(label=k, value=val) for k, val in LABELS.items()],
            opts=self._child_opts(parent, [], stateful=True),
        )
        self._volumes[(spec.name, volume.name)] = made
        return made

    @staticmethod
    def _container_name(spec: ServiceSpec, index: int, count: int) -> str:
        if spec.run_once:
            # A new release (image or command) gets a new container, so the job runs again.
            return f"{spec.name}-{spec.release[:12]}"
        return spec.name if count == 1 else f"{spec.name}-{index + 1}"

    def _network_args(self, spec: ServiceSpec) -> dict[str, Any]:
        """Networks, aliases and published ports: what the namespace owner of ``spec`` gets. A
        spec of no zone gets no network at all (not Docker's default bridge)."""
        if not self._joined(spec):
            return {"network_mode": "none"}
        return {
            "networks_advanced": [
                docker.ContainerNetworksAdvancedArgs(name=n.name, aliases=[spec.name])
                for n in self._joined(spec).values()
            ],
            "ports": [
                docker.ContainerPortArgs(internal=p.port, external=p.published, ip=p.host_ip)
                for p in spec.ports
                if p.published
            ],
        }

    def _shared_parts(
        self,
        spec: ServiceSpec,
        part: str,
        image_name: pulumi.Input[str],
        security: Security,
        files: list[ConfigFile],
        parent: pulumi.Resource,
    ) -> tuple[docker.RemoteImage, docker.Volume | None, docker.Container | None]:
        """What every replica's copy of ``spec``'s sidecar or exporter ``part`` shares: its
        image and its files (in a config volume of its own, filled by its carrier)."""
        name = f"{spec.name}-{part}"
        image = self._part_image(spec, part, image_name, parent)
        volume, carrier = self._config_carrier(name, spec.name, image, files, _user_of(security), parent)
        return image, volume, carrier

    def _sidecar(
        self,
        spec: ServiceSpec,
        sidecar: Sidecar,
        parts: tuple[docker.RemoteImage, docker.Volume | None, docker.Container | None],
        service_container: str,
        owner: docker.Container | None,
        parent: pulumi.Resource,
        depends_on: list[pulumi.Resource],
    ) -> docker.Container:
        image, volume, carrier = parts
        name = f"{service_container}-{sidecar.name}"
        records: dict[str, pulumi.Input[str]] = {ROLE_KEY: SIDECAR_ROLE, "aixsss.io/sidecar": sidecar.name}
        if carrier is not None:
            records[CONFIG_KEY] = carrier.id
        network = self._network_args(spec) if owner is None else _joining(owner)
        return docker.Container(
            name,
            _hardened(
                name=self._physical(spec.name, name),
                image=image.image_id,
                entrypoints=sidecar.command,
                user=_user_of(sidecar.security),
                tmpfs={path: "rw,noexec,nosuid,size=16m" for path in sidecar.security.tmpfs},
                **_limits(sidecar.resources.memory_mb, sidecar.resources.cpu_millis),
                restart="unless-stopped",
                must_run=True,
                healthcheck=docker.ContainerHealthcheckArgs(
                    tests=["CMD", *sidecar.probe_command],
                    interval="10s",
                    timeout="5s",
                    retries=5,
                    start_period="10s",
                    start_interval="1s",
                ),
                # The service starts only once its sidecar works (a native sidecar's startup probe).
                wait=True,
                wait_timeout=120,
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=CONFIG_DIR, read_only=True)]
                if volume is not None
                else [],
                # Labelled with the service it serves: audits see one service, in its networks.
                labels=_labels(spec.name, records),
                **network,
            ),
            opts=self._child_opts(parent, [*depends_on, *([carrier] if carrier else [])], service=spec.name),
        )

    def _container(
        self,
        spec: ServiceSpec,
        image: docker.RemoteImage,
        volumes: list[docker.Volume],
        mounts: list[docker.ContainerVolumeArgs],
        carrier: docker.Container | None,
        name: str,
        namespace_owner: docker.Container | None,
        parent: pulumi.Resource,
        depends_on: list[pulumi.Resource],
        *,
        awaited: bool = True,
    ) -> docker.Container:
        """``awaited``: `pulumi up` waits for its health check; False where a draining front is
        started right after it (its check passes through the front to the app, and the edge's
        route container awaits that check: docker_routes)."""
        security = spec.security
        envs = _envs(spec)
        user = _user(spec)
        healthcheck = None
        if spec.probe is not None:
            healthcheck = _service_check(spec.probe.command, spec.probe)
        network = self._network_args(spec) if namespace_owner is None else _joining(namespace_owner)
        records: dict[str, pulumi.Input[str]] = {
            FLOW_KEY: json.dumps([f.describe() for f in flows_of(spec, self._specs)]),
            PORTS_KEY: ports_record(spec),
        }
        if carrier is not None:
            records[CONFIG_KEY] = carrier.id
        # How long a stop waits for the process to finish its work: its own grace, or the drain
        # of a service that finishes requests or jobs on its stop signal (spec.Handover).
        grace = spec.stop_grace_seconds
        if grace is None and spec.handover is not None and spec.handover.drains_itself:
            grace = spec.handover.drain_seconds
        # Docker's default is 10 s; a worker finishing AI jobs needs longer. pulumi-docker's
        # delete stops with destroy_grace_seconds, not stop_timeout (0 when unset).
        stopping: dict[str, Any] = {
            "entrypoints": spec.command,
            "stop_timeout": grace,
            "destroy_grace_seconds": grace,
        }
        container = docker.Container(
            name,
            _hardened(
                name=self._physical(spec.name, name),
                image=image.image_id,
                command=spec.args,
                envs=envs,
                user=user,
                read_only=security.read_only_root,
                tmpfs={path: "rw,noexec,nosuid,size=64m" for path in security.tmpfs},
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=list(security.cap_add)),
                **_limits(spec.resources.memory_mb, spec.resources.cpu_millis),
                healthcheck=healthcheck,
                # `pulumi up` waits for the healthcheck, which is what orders the services.
                wait=awaited and not spec.run_once and healthcheck is not None,
                wait_timeout=180,
                # A run-once job: `pulumi up` waits for it to exit. pulumi-docker does not check
                # its exit code (terraform-provider-docker resourceDockerContainerCreate); what
                # depends on the job does, through its exit code (docker_jobs.succeeded).
                attach=spec.run_once,
                must_run=not spec.run_once,
                logs=spec.run_once,
                restart="no" if spec.run_once else "unless-stopped",
                # A container of a service with a sidecar joins the sidecar's namespace, so its
                # networks and ports are the sidecar's (and loopback is shared with it).
                **network,
                **stopping,
                # docker-init (tini) as PID 1, forwarding signals and reaping orphans (spec.init).
                **({"init": True} if spec.init else {}),
                volumes=_mounts(spec, volumes) + mounts,
                labels=_labels(spec.name, records),
            ),
            opts=self._child_opts(parent, depends_on, service=spec.name),
        )
        if spec.run_once:
            self._jobs.append(container)
        return container

    def _front(
        self,
        spec: ServiceSpec,
        handover: Handover,
        parts: tuple[docker.RemoteImage, docker.Volume | None, docker.Container | None],
        service_container: str,
        namespace_owner: docker.Container,
        service: docker.Container,
        parent: pulumi.Resource,
    ) -> docker.Container:
        """The draining front of one replica (drain_front.py): in its namespace on the service's
        port, started after the app and depending on it, so the first of the old set a later
        `pulumi up` deletes; SIGQUIT with the drain as grace lets its requests finish."""
        image, volume, carrier = parts
        assert volume is not None and carrier is not None
        port = spec.ports[0].port
        path = spec.probe.http_path if spec.probe is not None and spec.probe.http_path else "/"
        name = f"{service_container}-{FRONT}"
        return docker.Container(
            name,
            _hardened(
                name=self._physical(spec.name, name),
                image=image.image_id,
                entrypoints=["nginx", "-c", FRONT_CONF, "-g", "daemon off;"],
                user=f"{FRONT_UID}:{FRONT_UID}",
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                # Its CPU is the app's: every request crosses it.
                **_limits(64, spec.resources.cpu_millis),
                restart="unless-stopped",
                must_run=True,
                # Healthy when the app answers through it, with the app's own probe timing. Not
                # awaited: the edge's route container is, which waits until the edge checked every
                # new front the same way and took them (docker_routes).
                healthcheck=_service_check(
                    ["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"], spec.probe
                ),
                # nginx's graceful stop (the image's STOPSIGNAL too, said here so no image decides).
                stop_signal="SIGQUIT",
                stop_timeout=handover.drain_seconds,
                destroy_grace_seconds=handover.drain_seconds,
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=volume.name, container_path=CONFIG_DIR, read_only=True)
                ],
                labels=_labels(spec.name, {ROLE_KEY: FRONT_ROLE, CONFIG_KEY: carrier.id}),
                **_joining(namespace_owner),
            ),
            opts=self._child_opts(parent, [service, carrier], service=spec.name),
        )

    def _companion(
        self,
        spec: ServiceSpec,
        companion: Companion,
        image: docker.RemoteImage,
        volumes: list[docker.Volume],
        config_mount: list[docker.ContainerVolumeArgs],
        carrier: docker.Container | None,
        service: docker.Container,
        parent: pulumi.Resource,
    ) -> docker.Container:
        """``companion`` beside ``service``: its image, user, environment, volumes and files, on
        its networks but without its alias (clients never reach the companion by the service's
        name) and publishing nothing. Started once the service is healthy."""
        name = f"{spec.name}-{companion.name}"
        envs = _envs(spec)
        records: dict[str, pulumi.Input[str]] = {ROLE_KEY: COMPANION_ROLE, "aixsss.io/companion": companion.name}
        if carrier is not None:
            records[CONFIG_KEY] = carrier.id
        return docker.Container(
            name,
            _hardened(
                name=f"{self._prefix}-{name}",
                image=image.image_id,
                entrypoints=companion.command,
                envs=envs,
                user=_user(spec),
                tmpfs={path: "rw,noexec,nosuid,size=64m" for path in spec.security.tmpfs},
                **_limits(companion.resources.memory_mb, companion.resources.cpu_millis),
                healthcheck=docker.ContainerHealthcheckArgs(
                    tests=["CMD", *companion.probe.command],
                    # Docker before 25 (Debian 12's 20.10) ignores start_interval and probes at
                    # this interval from the start: healthy is seen within 10 s, not 30.
                    interval="10s",
                    timeout="5s",
                    retries=3,
                    start_period=f"{companion.probe.start_period_seconds}s",
                    start_interval="2s",
                ),
                wait=True,
                wait_timeout=companion.probe.start_period_seconds + 60,
                restart="unless-stopped",
                must_run=True,
                # The zones' networks only: the network of published ports would give it a route out.
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgs(name=self.networks[zone].name) for zone in sorted(spec.zones)
                ],
                volumes=_mounts(spec, volumes) + config_mount,
                labels=_labels(spec.name, records),
            ),
            opts=self._child_opts(parent, [service, *companion.depends_on]),
        )

    def _exporters(
        self,
        spec: ServiceSpec,
        exporter: Exporter,
        namespaces: list[tuple[str, docker.Container]],
        parent: pulumi.Resource,
    ) -> list[pulumi.Resource]:
        """``exporter`` in each replica's network namespace, as a container of a pod: it reads the
        service over loopback and listens on the namespace's networks, of which the metrics
        network is the one Prometheus joins. Its secrets come from the service's secret env.
        No health check: the exporters' images hold no shell or client to run one, and a
        scrape's ``up`` is what says an exporter works (the alerts read it)."""
        image, volume, carrier = self._shared_parts(
            spec, exporter.name, exporter.image, exporter.security, exporter.files, parent
        )
        user = _user_of(exporter.security)
        secret = {k: spec.secret_env[key] for k, key in exporter.env_from_service_secret.items()}
        secret |= exporter.secret_env
        scraper = f"{SCRAPER} (network {docker_metrics_network(self._config.environment, spec.name)})"
        flow = {"client": scraper, "server": spec.name, "ports": [exporter.port], "tls": False, "auth": "none"}
        records: dict[str, pulumi.Input[str]] = {
            ROLE_KEY: EXPORTER_ROLE,
            "aixsss.io/exporter": exporter.name,
            FLOW_KEY: json.dumps([flow]),
        }
        if carrier is not None:
            records[CONFIG_KEY] = carrier.id
        made: list[pulumi.Resource] = [image, *([volume, carrier] if volume and carrier else [])]
        mounts = []
        if volume is not None:
            mounts = [docker.ContainerVolumeArgs(volume_name=volume.name, container_path=CONFIG_DIR, read_only=True)]
        for container_name, owner in namespaces:
            made.append(
                docker.Container(
                    f"{container_name}-{exporter.name}",
                    _hardened(
                        name=self._physical(spec.name, f"{container_name}-{exporter.name}"),
                        image=image.image_id,
                        command=exporter.args or None,
                        envs=_env_list(exporter.env, secret),
                        user=user,
                        tmpfs={path: "rw,noexec,nosuid,size=16m" for path in exporter.security.tmpfs},
                        **_limits(exporter.resources.memory_mb, exporter.resources.cpu_millis),
                        restart="unless-stopped",
                        must_run=True,
                        volumes=mounts,
                        labels=_labels(spec.name, records),
                        **_joining(owner),
                    ),
                    opts=self._child_opts(parent, [owner, *([carrier] if carrier else [])], service=spec.name),
                )
            )
        return made

    def _config_carrier(
        self,
        name: str,
        service: str,
        image: docker.RemoteImage,
        files: list[ConfigFile],
        user: str | None,
        parent: pulumi.Resource,
    ) -> tuple[docker.Volume | None, docker.Container | None]:
        """``files`` in a volume of their own, written before the container ``name`` starts.

        A real daemon refuses uploads into a container whose root filesystem is read-only: the
        provider copies its tar to `/` (terraform-provider-docker v4.5
        resourceDockerContainerCreate → CopyToContainer), and moby refuses any path outside a
        writable volume of a read-only root (daemon/archive.go, ErrRootFSReadOnly). So a
        container that is only created, never started (`start=False`), carries the uploads into
        the volume, and the service mounts the volume read-only at CONFIG_DIR. The volume's name
        carries the list of paths, so a file dropped from the spec leaves no stale copy behind.
        """
        if not files:
            return None, None
        layout = hashlib.sha256("\n".join(sorted(f.path for f in files)).encode()).hexdigest()[:8]
        volume = docker.Volume(
            f"{name}-config",
            name=self._physical(service, f"{name}-config-{layout}"),
            labels=[
                docker.VolumeLabelArgs(label=k, value=val)
                for k, val in {**LABELS, ROLE_KEY: CONFIG_VOLUME_ROLE}.items()
            ],
            opts=self._child_opts(parent, [], service=service),
        )
        carrier = docker.Container(
            f"{name}-config",
            _hardened(
                name=self._physical(service, f"{name}-config"),
                image=image.image_id,
                user=user,
                # Writable only so that the daemon takes the uploads; it never runs (start=False).
                read_only=False,
                entrypoints=["true"],
                start=False,
                must_run=False,
                restart="no",
                network_mode="none",
                **_limits(16, 100),
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=CONFIG_DIR)],
                uploads=[
                    docker.ContainerUploadArgs(
                        file=f.path,
                        content=f.content,
                        permissions=f"{f.mode:04o}",
                        owner=str(f.owner) if f.owner is not None else None,
                    )
                    for f in files
                ],
                labels=_labels(service, {ROLE_KEY: CONFIG_CARRIER_ROLE}),
            ),
            opts=self._child_opts(parent, [volume], service=service),
        )
        return volume, carrier

    def _volume_owner(
        self, spec: ServiceSpec, image: docker.RemoteImage, volumes: list[docker.Volume], parent: pulumi.Resource
    ) -> list[pulumi.Resource]:
        uid = spec.security.run_as_user
        if not volumes or uid in (None, 0):
            return []
        owner = f"{uid}:{spec.security.run_as_group or uid}"
        # A shared volume is its service's to prepare (Volume.shared_from); one the image owns
        # arrives owned by its user (Volume.owned_by_image).
        mounts = {
            v.path: vol
            for v, vol in zip(spec.volumes, volumes, strict=True)
            if v.shared_from is None and not v.owned_by_image
        }
        if not mounts:
            return []
        return [self._chown_job(spec.name, image, owner, mounts, spec, parent)]

    def _chown_job(
        self,
        name: str,
        image: docker.RemoteImage,
        owner: str,
        mounts: dict[str, docker.Volume],
        spec: ServiceSpec,
        parent: pulumi.Resource,
    ) -> docker.Container:
        """A one-shot root container that hands new volumes to a service's non-root user.

        Kubernetes does this with fsGroup; Docker creates volumes owned by root.
        """
        owner_job = docker.Container(
            f"{name}-volume-owner",
            _hardened(
                name=f"{self._prefix}-{name}-volume-owner",
                image=image.image_id,
                entrypoints=["chown", "-R", owner],
                command=list(mounts),
                user="0:0",
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=["CHOWN", "FOWNER"]),
                network_mode="none",
                **_limits(64, 500),
                attach=True,
                must_run=False,
                restart="no",
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=vol.name, container_path=path)
                    for path, vol in mounts.items()
                ],
                # The one container that runs as root; the policy pack allows exactly this shape.
                labels=_labels(spec.name, {ROLE_KEY: VOLUME_OWNER_ROLE}),
            ),
            opts=self._child_opts(parent, list(mounts.values())),
        )
        self._jobs.append(owner_job)
        return owner_job

    def _routes_volume(
        self, spec: ServiceSpec, routes: Routes, image: docker.RemoteImage, parent: pulumi.Resource
    ) -> tuple[docker.Volume, docker.Container]:
        """``spec``'s routes volume (docker_routes), and the job that hands it to its user."""
        volume = docker.Volume(
            f"{spec.name}-routes",
            name=f"{self._prefix}-{spec.name}-routes",
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in LABELS.items()],
            # Protected like every volume of a protected stack, though its routes are rewritten.
            opts=self._child_opts(parent, [], stateful=True),
        )
        user = _user(spec)
        assert user is not None, f"{spec.name}: routes are written as its user"
        # One watcher records what is live; one host publishes the proxy's ports once anyway.
        assert spec.replicas == 1, f"{spec.name}: routes serve a single proxy on Docker"
        return volume, self._chown_job(f"{spec.name}-routes", image, user, {routes.directory: volume}, spec, parent)

    def _announcers(
        self,
        spec: ServiceSpec,
        routes: Routes,
        image: docker.RemoteImage,
        mounts: list[docker.ContainerVolumeArgs],
        proxies: list[pulumi.Resource],
        parent: pulumi.Resource,
    ) -> list[docker.Container]:
        """Per upstream of ``spec`` placed before it, a container that writes that upstream's
        instances (docker_routes) as soon as they are started, and is healthy once ``spec`` (the
        ``proxies``, started before it) says it loaded them: after each new instance answered its
        check from there, which is as long as the instances take to start.

        Each is replaced delete-first under its fixed name: removing one changes nothing (the file
        stays until the next one is written). A new set of instances gives it new names to write,
        so `pulumi up` waits for the proxy to take the new set, all before it deletes the old set
        at its end."""
        user = _user(spec)
        announcers: list[docker.Container] = []
        unplaced = [u for u in spec.talks_to if u not in self._instances]
        if unplaced:
            raise ValueError(f"{spec.name}: its upstreams {unplaced} must be placed before it (their routes name them)")
        for upstream in spec.talks_to:
            owners, started, port, path = self._instances[upstream]
            # One Output per route container (its file); its check reads the mark back from it.
            written = pulumi.Output.all(*(o.name for o in owners)).apply(
                lambda names, upstream=upstream, port=port, path=path: docker_routes.file_for(
                    routes, upstream, [(f"{n}:{port}", f"http://{n}:{port}{path}") for n in names]
                )
            )
            name = f"{spec.name}-routes-{upstream}"
            announcers.append(
                docker.Container(
                    name,
                    _hardened(
                        name=f"{self._prefix}-{name}",
                        image=image.image_id,
                        entrypoints=docker_routes.announcing(routes, upstream),
                        command=[written],
                        user=user,
                        network_mode="none",
                        **_limits(16, 100),
                        restart="unless-stopped",
                        must_run=True,
                        healthcheck=docker.ContainerHealthcheckArgs(
                            tests=["CMD", *docker_routes.loaded_check(routes, upstream)],
                            # Docker before 25 ignores start_interval: 5 s is the longest a new
                            # set waits for its switch there. Its start is the instances' (the
                            # api's front waits as long: _service_check, wait_timeout).
                            interval="5s",
                            timeout="5s",
                            retries=3,
                            start_period="180s",
                            start_interval="1s",
                        ),
                        wait=True,
                        wait_timeout=200,
                        volumes=mounts,
                        labels=_labels(spec.name, {ROLE_KEY: ROUTES_ROLE, "aixsss.io/routes": upstream}),
                    ),
                    # Once everything the check goes through is created (the api's app and
                    # fronts, not awaited: this is), so its wait runs with their start and
                    # depends on nothing created after it.
                    opts=self._child_opts(parent, [*proxies, *started]),
                )
            )
        return announcers

    def _acme_client(
        self, spec: ServiceSpec, parent: pulumi.Resource
    ) -> tuple[list[docker.ContainerVolumeArgs], docker.Container]:
        """lego next to the edge: HTTP-01 through the edge's webroot, certificates in a volume.

        nginx starts on the internal-CA certificate the edge ships, and reloads every six hours
        (its command), so renewed certificates are picked up without a restart.
        """
        acme = spec.acme
        assert acme is not None
        # lego's files get the edge's group, so the edge (another uid) reads the key through it.
        acme_user = f"{ACME_UID}:{spec.security.run_as_group or spec.security.run_as_user}"
        certs = docker.Volume(
            "edge-acme-certs", name=f"{self._prefix}-edge-acme-certs", opts=self._child_opts(parent, [], stateful=True)
        )
        # Protected like every volume of a protected stack, though it only holds challenges.
        webroot = docker.Volume(
            "edge-acme-webroot",
            name=f"{self._prefix}-edge-acme-webroot",
            opts=self._child_opts(parent, [], stateful=True),
        )
        lego = (
            f"lego --accept-tos --email {shlex.quote(acme.email)} --server {shlex.quote(acme.server)} "
            f"--domains {shlex.quote(acme.domain)} --http --http.webroot /webroot --path /certs/.lego"
        )
        issued = f"/certs/.lego/certificates/{acme.domain}"
        script = (
            "set -u; "
            "umask 027; "
            f"[ -f /certs/tls.crt ] || cp {BOOTSTRAP_DIR}/tls.crt {BOOTSTRAP_DIR}/tls.key /certs/; "
            "chmod 0440 /certs/tls.key; "
            f"while true; do "
            f"if [ -f {issued}.crt ]; then {lego} renew --days 30; else {lego} run; fi; "
            f"[ -f {issued}.crt ] && cp {issued}.crt /certs/tls.crt && cp {issued}.key /certs/tls.key "
            "&& chmod 0440 /certs/tls.key; "
            "sleep 43200; done"
        )
        image = docker.RemoteImage(
            "acme-client-image",
            name=self._config.images.acme_client,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        # Served until lego's first certificate arrives; delivered like every service's files.
        assert acme.bootstrap_cert_pem is not None and acme.bootstrap_key_pem is not None
        bootstrap_files = [
            ConfigFile(f"{BOOTSTRAP_DIR}/tls.crt", acme.bootstrap_cert_pem),
            ConfigFile(f"{BOOTSTRAP_DIR}/tls.key", acme.bootstrap_key_pem, secret=True, mode=0o400, owner=ACME_UID),
        ]
        bootstrap_volume, bootstrap_carrier = self._config_carrier(
            "edge-acme-client", f"{spec.name}-acme-client", image, bootstrap_files, acme_user, parent
        )
        assert bootstrap_volume is not None and bootstrap_carrier is not None
        owner = self._chown_job("edge-acme", image, acme_user, {"/certs": certs, "/webroot": webroot}, spec, parent)
        client = docker.Container(
            "edge-acme-client",
            _hardened(
                name=f"{self._prefix}-edge-acme-client",
                image=image.image_id,
                entrypoints=["/bin/sh", "-c", script],
                user=acme_user,
                envs=["HOME=/tmp"],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                **_limits(128, 200),
                # Healthy once a certificate is in place (the bootstrap one, then lego's).
                healthcheck=docker.ContainerHealthcheckArgs(
                    tests=["CMD", "test", "-s", "/certs/tls.crt"], interval="30s", timeout="5s", retries=3
                ),
                restart="unless-stopped",
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.networks[Zone.EGRESS].name)],
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=certs.name, container_path="/certs"),
                    docker.ContainerVolumeArgs(volume_name=webroot.name, container_path="/webroot"),
                    docker.ContainerVolumeArgs(
                        volume_name=bootstrap_volume.name, container_path=CONFIG_DIR, read_only=True
                    ),
                ],
                labels=_labels(f"{spec.name}-acme-client", {CONFIG_KEY: bootstrap_carrier.id}),
            ),
            opts=self._child_opts(parent, [owner, bootstrap_carrier]),
        )
        mounts = [
            docker.ContainerVolumeArgs(volume_name=certs.name, container_path=acme.mount_dir, read_only=True),
            docker.ContainerVolumeArgs(volume_name=webroot.name, container_path=acme.webroot, read_only=True),
        ]
        return mounts, client

"""The Docker platform: one host, networks per zone, hardened containers with healthchecks."""

from __future__ import annotations

import json
import shlex

import pulumi
import pulumi_docker as docker

from components.config import StackConfig
from components.platforms.base import FLOW_KEY, PORTS_KEY, Placement, flows_of, ports_record
from components.spec import ServiceSpec, Zone

ACME_UID = 65532  # lego needs no privileges: HTTP-01 goes through the edge's webroot
LABELS = {"app.kubernetes.io/part-of": "aixsss", "managed-by": "pulumi"}
ROLE_KEY, VOLUME_OWNER_ROLE = "aixsss.io/role", "volume-owner"


def _labels(service: str, records: dict[str, str] | None = None) -> list[docker.ContainerLabelArgs]:
    values = {**LABELS, "aixsss.service": service, **(records or {})}
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in values.items()]


class DockerPlatform(pulumi.ComponentResource):
    name = "docker"

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aixsss:platform:Docker", name, None, opts)
        self._config = config
        self._prefix = f"aixsss-{config.environment}"
        self._specs: dict[str, ServiceSpec] = {}
        self.provider = docker.Provider("docker", host=config.docker.host, opts=pulumi.ResourceOptions(parent=self))
        self._opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.networks: dict[Zone, docker.Network] = {
            zone: docker.Network(
                f"{zone}-network",
                name=f"{self._prefix}-{zone}",
                driver="bridge",
                # The backend network has no route out: data services cannot reach the internet.
                internal=zone is Zone.BACKEND,
                labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in LABELS.items()],
                opts=self._opts,
            )
            for zone in Zone
        }
        self.register_outputs({})

    def dns_names(self, service: str) -> list[str]:
        # Containers find each other by their network alias (the service name).
        return [service, "localhost"]

    def _child_opts(
        self, parent: pulumi.Resource, depends_on: list[pulumi.Resource], *, stateful: bool = False
    ) -> pulumi.ResourceOptions:
        protect = stateful and self._config.protect_data
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.provider,
            depends_on=depends_on,
            protect=protect,
            retain_on_delete=protect,
        )

    def place(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement:
        self._specs[spec.name] = spec
        image = docker.RemoteImage(
            f"{spec.name}-image",
            name=spec.image,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        volumes = [
            docker.Volume(
                f"{spec.name}-{v.name}",
                name=f"{self._prefix}-{spec.name}-{v.name}",
                labels=[docker.VolumeLabelArgs(label=k, value=val) for k, val in LABELS.items()],
                opts=self._child_opts(parent, [], stateful=True),
            )
            for v in spec.volumes
        ]
        prepare = self._volume_owner(spec, image, volumes, parent)
        extra: list[docker.Container] = []
        acme_volumes: list[docker.ContainerVolumeArgs] = []
        if spec.acme is not None:
            acme_volumes, acme_client = self._acme_client(spec, parent)
            extra.append(acme_client)
            depends_on = [*depends_on, acme_client]
        count = 1 if spec.run_once else spec.replicas
        containers = [
            self._container(spec, image, volumes, acme_volumes, index, count, parent, depends_on + prepare)
            for index in range(count)
        ]
        networks = sorted(f"{self._prefix}-{z}" for z in spec.zones)
        exposed = [f"{p.host_ip}:{p.published}->{p.port}" for p in spec.ports if p.published]
        return Placement(
            spec=spec,
            ready=list(containers),
            networks=networks,
            exposed=exposed,
            non_root=spec.security.run_as_user not in (None, 0),
            read_only_root=spec.security.read_only_root,
            resources=[image, *volumes, *prepare, *containers, *extra],
        )

    def _container(
        self,
        spec: ServiceSpec,
        image: docker.RemoteImage,
        volumes: list[docker.Volume],
        acme_volumes: list[docker.ContainerVolumeArgs],
        index: int,
        count: int,
        parent: pulumi.Resource,
        depends_on: list[pulumi.Resource],
    ) -> docker.Container:
        security = spec.security
        name = spec.name if count == 1 else f"{spec.name}-{index + 1}"
        if spec.run_once:
            # A new release (image or command) gets a new container, so the job runs again.
            name = f"{spec.name}-{spec.release[:12]}"
        envs = pulumi.Output.all(*(pulumi.Output.concat(k, "=", v) for k, v in spec.secret_env.items())).apply(
            lambda secret: [f"{k}={v}" for k, v in spec.env.items()] + list(secret)
        )
        user = None
        if security.run_as_user is not None:
            user = f"{security.run_as_user}:{security.run_as_group or security.run_as_user}"
        healthcheck = None
        if spec.probe is not None:
            healthcheck = docker.ContainerHealthcheckArgs(
                tests=["CMD", *spec.probe.command],
                interval="10s",
                timeout="5s",
                retries=5,
                start_period=f"{spec.probe.start_period_seconds}s",
                start_interval="2s",
            )
        return docker.Container(
            name,
            docker.ContainerArgs(
                name=f"{self._prefix}-{name}",
                image=image.image_id,
                entrypoints=spec.command,
                command=spec.args,
                envs=envs,
                user=user,
                read_only=security.read_only_root,
                tmpfs={path: "rw,noexec,nosuid,size=64m" for path in security.tmpfs},
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=list(security.cap_add)),
                security_opts=["no-new-privileges:true"],
                memory=spec.resources.memory_mb,
                memory_swap=spec.resources.memory_mb,
                cpus=f"{spec.resources.cpu_millis / 1000:g}",
                healthcheck=healthcheck,
                # `pulumi up` waits for the healthcheck, which is what orders the services.
                wait=not spec.run_once and healthcheck is not None,
                wait_timeout=180,
                # A run-once job: wait for it to exit and fail the update if it fails.
                attach=spec.run_once,
                must_run=not spec.run_once,
                logs=spec.run_once,
                restart="no" if spec.run_once else "unless-stopped",
                log_driver="json-file",
                log_opts={"max-size": "10m", "max-file": "3"},
                networks_advanced=[
                    docker.ContainerNetworksAdvancedArgs(name=self.networks[zone].name, aliases=[spec.name])
                    for zone in sorted(spec.zones)
                ],
                ports=[
                    docker.ContainerPortArgs(internal=p.port, external=p.published, ip=p.host_ip)
                    for p in spec.ports
                    if p.published
                ],
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=vol.name, container_path=v.path)
                    for v, vol in zip(spec.volumes, volumes, strict=True)
                ]
                + acme_volumes,
                uploads=[
                    docker.ContainerUploadArgs(
                        file=f.path,
                        content=f.content,
                        permissions=f"{f.mode:04o}",
                        owner=str(f.owner) if f.owner is not None else None,
                    )
                    for f in spec.files
                ],
                labels=_labels(
                    spec.name,
                    {
                        FLOW_KEY: json.dumps([f.describe() for f in flows_of(spec, self._specs)]),
                        PORTS_KEY: ports_record(spec),
                    },
                ),
            ),
            opts=self._child_opts(parent, depends_on),
        )

    def _volume_owner(
        self, spec: ServiceSpec, image: docker.RemoteImage, volumes: list[docker.Volume], parent: pulumi.Resource
    ) -> list[pulumi.Resource]:
        uid = spec.security.run_as_user
        if not volumes or uid in (None, 0):
            return []
        owner = f"{uid}:{spec.security.run_as_group or uid}"
        mounts = {v.path: vol for v, vol in zip(spec.volumes, volumes, strict=True)}
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
        return docker.Container(
            f"{name}-volume-owner",
            docker.ContainerArgs(
                name=f"{self._prefix}-{name}-volume-owner",
                image=image.image_id,
                entrypoints=["chown", "-R", owner],
                command=list(mounts),
                user="0:0",
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=["CHOWN", "FOWNER"]),
                security_opts=["no-new-privileges:true"],
                network_mode="none",
                read_only=True,
                memory=64,
                memory_swap=64,
                cpus="0.5",
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

    def _acme_client(
        self, spec: ServiceSpec, parent: pulumi.Resource
    ) -> tuple[list[docker.ContainerVolumeArgs], docker.Container]:
        """lego next to the edge: HTTP-01 through the edge's webroot, certificates in a volume.

        nginx starts on the internal-CA certificate the edge ships, and reloads every six hours
        (its command), so renewed certificates are picked up without a restart.
        """
        acme = spec.acme
        assert acme is not None
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
            "[ -f /certs/tls.crt ] || cp /bootstrap/tls.crt /bootstrap/tls.key /certs/; "
            f"while true; do "
            f"if [ -f {issued}.crt ]; then {lego} renew --days 30; else {lego} run; fi; "
            f"[ -f {issued}.crt ] && cp {issued}.crt /certs/tls.crt && cp {issued}.key /certs/tls.key; "
            "sleep 43200; done"
        )
        image = docker.RemoteImage(
            "acme-client-image",
            name=self._config.images.acme_client,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        owner = self._chown_job(
            "edge-acme", image, f"{ACME_UID}:{ACME_UID}", {"/certs": certs, "/webroot": webroot}, spec, parent
        )
        client = docker.Container(
            "edge-acme-client",
            docker.ContainerArgs(
                name=f"{self._prefix}-edge-acme-client",
                image=image.image_id,
                entrypoints=["/bin/sh", "-c", script],
                user=f"{ACME_UID}:{ACME_UID}",
                envs=["HOME=/tmp"],
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
                security_opts=["no-new-privileges:true"],
                memory=128,
                memory_swap=128,
                cpus="0.2",
                # Healthy once a certificate is in place (the bootstrap one, then lego's).
                healthcheck=docker.ContainerHealthcheckArgs(
                    tests=["CMD", "test", "-s", "/certs/tls.crt"], interval="30s", timeout="5s", retries=3
                ),
                restart="unless-stopped",
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.networks[Zone.EGRESS].name)],
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=certs.name, container_path="/certs"),
                    docker.ContainerVolumeArgs(volume_name=webroot.name, container_path="/webroot"),
                ],
                uploads=[
                    docker.ContainerUploadArgs(
                        file="/bootstrap/tls.crt", content=acme.bootstrap_cert_pem, permissions="0444"
                    ),
                    docker.ContainerUploadArgs(
                        file="/bootstrap/tls.key", content=acme.bootstrap_key_pem, permissions="0400"
                    ),
                ],
                labels=_labels(f"{spec.name}-acme-client"),
            ),
            opts=self._child_opts(parent, [owner]),
        )
        mounts = [
            docker.ContainerVolumeArgs(volume_name=certs.name, container_path=acme.mount_dir, read_only=True),
            docker.ContainerVolumeArgs(volume_name=webroot.name, container_path=acme.webroot, read_only=True),
        ]
        return mounts, client

"""The Kubernetes platform: a restricted namespace, default-deny networking, hardened workloads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NotRequired, TypedDict

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    ContainerArgsDict,
    EnvVarArgsDict,
    PodSpecArgsDict,
    PodTemplateSpecArgsDict,
    ProbeArgsDict,
    SecurityContextArgsDict,
    ServicePortArgsDict,
    VolumeArgsDict,
    VolumeMountArgsDict,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgsDict, ObjectMetaArgsDict
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicyEgressRuleArgsDict,
    NetworkPolicyIngressRuleArgsDict,
    NetworkPolicyPeerArgsDict,
    NetworkPolicyPortArgsDict,
    NetworkPolicySpecArgsDict,
)

from components.config import StackConfig
from components.platforms import kubernetes_checkov, kubernetes_files, kubernetes_handover
from components.platforms.base import FLOW_KEY, OPERATOR_TRAFFIC, PORTS_KEY, Placement, flows_of, ports_record
from components.platforms.kubernetes_files import file_key as _file_key
from components.spec import (
    CONFIG_DIR,
    ClusterBackup,
    ConfigFile,
    Exporter,
    PostgresCluster,
    Probe,
    RedisHa,
    Security,
    ServiceSpec,
    Sidecar,
    Zone,
)

if TYPE_CHECKING:
    import pulumi_docker as docker

    from components.monitoring import MonitoringSpec

PART_OF = {"app.kubernetes.io/part-of": "aixsss", "app.kubernetes.io/managed-by": "pulumi"}
# CloudNativePG (>= 1.26, for plugins; its CRDs in tests/crds are 1.30's) and its Barman Cloud
# plugin (>= 0.14) are prerequisites, like cert-manager: the program declares their resources.
CNPG_API = "postgresql.cnpg.io/v1"
BARMAN_API = "barmancloud.cnpg.io/v1"
BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
CNPG_RELOAD = "cnpg.io/reload"
# The instance manager's status endpoint, which the operator polls.
CNPG_STATUS_PORT = 8000
# cert-manager's HTTP-01 solver pods (one per challenge, in the Certificate's namespace): their
# label and port (cert-manager's acmesolver listens on 8089).
ACME_SOLVER_LABELS = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089
# Egress to the internet: HTTPS only, and never to cluster-private or link-local ranges.
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


# The custom resources' specs, in their APIs' own (camelCase) spelling. The SDK has no types for
# them and kubernetes-validate no schema, so these few fields are typed here.
class _ParentReference(TypedDict):  # gateway.networking.k8s.io/v1
    name: str
    namespace: NotRequired[str]
    kind: NotRequired[str]


class _HTTPBackendRef(TypedDict):
    name: str
    port: int


class _HTTPRouteRule(TypedDict):
    backendRefs: list[_HTTPBackendRef]


class _HTTPRouteSpec(TypedDict):
    parentRefs: list[_ParentReference]
    hostnames: list[str]
    rules: list[_HTTPRouteRule]


class _IssuerRef(TypedDict):  # cert-manager.io/v1
    kind: str
    name: str


class _CertificatePrivateKey(TypedDict):
    algorithm: str
    size: int
    rotationPolicy: str


class _CertificateSpec(TypedDict):
    secretName: str
    dnsNames: list[str]
    issuerRef: _IssuerRef
    privateKey: _CertificatePrivateKey
    renewBefore: str


class _GatewayHTTPRouteSolver(TypedDict):
    parentRefs: list[_ParentReference]
    serviceType: str
    podTemplate: dict[str, object]


class _AcmeSolver(TypedDict):
    http01: dict[str, _GatewayHTTPRouteSolver]


class _AcmeIssuer(TypedDict):
    server: str
    email: str
    privateKeySecretRef: dict[str, str]
    solvers: list[_AcmeSolver]


class _IssuerSpec(TypedDict):
    acme: _AcmeIssuer


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, **PART_OF}


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _probe(probe: Probe, initial_delay: int) -> ProbeArgsDict:
    if probe.http_path is not None or probe.tcp:
        if probe.port is None:
            raise ValueError(f"an HTTP or TCP probe needs a port: {probe}")
        if probe.http_path is not None:
            result: ProbeArgsDict = {"http_get": {"path": probe.http_path, "port": probe.port, "scheme": probe.scheme}}
        else:
            result = {"tcp_socket": {"port": probe.port}}
    else:
        result = {"exec_": {"command": probe.command}}
    result["initial_delay_seconds"] = initial_delay
    result["period_seconds"] = 10
    result["timeout_seconds"] = 5
    result["failure_threshold"] = 6
    return result


class KubernetesPlatform(pulumi.ComponentResource):
    name = "kubernetes"
    runs_postgres_clusters = True

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aixsss:platform:Kubernetes", name, None, opts)
        self._config = config
        settings = config.kubernetes
        self.namespace_name = settings.namespace or f"aixsss-{config.environment}"
        self.provider = k8s.Provider(
            "kubernetes",
            kubeconfig=settings.kubeconfig or None,
            context=settings.context or None,
            namespace=self.namespace_name,
            # Render mode writes manifests for review (or GitOps) instead of applying them.
            render_yaml_to_directory=settings.render_yaml_to or None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._specs: dict[str, ServiceSpec] = {}
        self._builder: docker.Provider | None = None
        self.namespace = k8s.core.v1.Namespace(
            "namespace",
            metadata={
                "name": self.namespace_name,
                "labels": {
                    **PART_OF,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            # Deleting the namespace deletes the PVCs in it.
            opts=pulumi.ResourceOptions(
                parent=self, provider=self.provider, protect=config.protect_data, retain_on_delete=config.protect_data
            ),
        )
        self.default_deny = self._network_policy("default-deny", {}, ingress=[], egress=[], parent=self)
        self.allow_dns = self._network_policy(
            "allow-dns",
            {},
            egress=[
                {
                    "to": [
                        {
                            "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
            parent=self,
        )
        self.register_outputs({"namespace": self.namespace_name})

    # The cluster DNS Service (kube-dns is its name on every distribution, CoreDNS included),
    # resolved once at start through the pod's resolv.conf; NetworkPolicy allow-dns admits it.
    resolver = "kube-dns.kube-system.svc.cluster.local"
    announces_routes = False  # Platform.announces_routes

    def resolvable_name(self, service: str) -> str:
        # nginx's resolver uses no search domains: the fully qualified Service name.
        return f"{service}.{self.namespace_name}.svc.cluster.local"

    def dns_names(self, service: str) -> list[str]:
        ns = self.namespace_name
        return [f"{service}.{ns}.svc", service, f"{service}.{ns}", f"{service}.{ns}.svc.cluster.local", "localhost"]

    def build_image(
        self,
        name: str,
        context: str,
        dockerfile: str,
        target: str | None,
        version: str,
        args: dict[str, str] | None = None,
    ) -> pulumi.Output[str]:
        """Build ``target`` with the Docker daemon of the machine running Pulumi (DOCKER_HOST and
        its `docker login` credentials), push it to app.registry, and deploy it by digest: the
        cluster runs exactly the bytes built, whatever later happens to the tag."""
        # Here only: a stack that deploys published images never loads the Docker SDK.
        import pulumi_docker as docker

        if self._builder is None:
            self._builder = docker.Provider("image-builder", opts=pulumi.ResourceOptions(parent=self))
        built = docker.Image(
            f"{name}-build",
            image_name=f"{self._config.app.registry}/aixsss-{name}:{version}",
            build=docker.DockerBuildArgs(
                context=context,
                dockerfile=dockerfile,
                target=target,
                args=args,
                platform=self._config.app.platform,
            ),
            skip_push=False,
            opts=pulumi.ResourceOptions(parent=self, provider=self._builder),
        )
        return built.repo_digest

    def _meta(
        self, name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> ObjectMetaArgsDict:
        meta: ObjectMetaArgsDict = {"name": name, "namespace": self.namespace_name, "labels": labels or PART_OF}
        if annotations:
            meta["annotations"] = annotations
        return meta

    def _opts_for(
        self, parent: pulumi.Resource, depends_on: list[pulumi.Resource], *, stateful: bool = False
    ) -> pulumi.ResourceOptions:
        protect = stateful and self._config.protect_data
        return pulumi.ResourceOptions(
            parent=parent,
            provider=self.provider,
            depends_on=[self.namespace, *depends_on],
            protect=protect,
            retain_on_delete=protect,
        )

    def _network_policy(
        self,
        name: str,
        selector: dict[str, str],
        *,
        parent: pulumi.Resource,
        ingress: list[NetworkPolicyIngressRuleArgsDict] | None = None,
        egress: list[NetworkPolicyEgressRuleArgsDict] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> k8s.networking.v1.NetworkPolicy:
        types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
        # An empty selector selects every pod in the namespace.
        pod_selector: LabelSelectorArgsDict = {"match_labels": selector} if selector else {}
        spec: NetworkPolicySpecArgsDict = {"pod_selector": pod_selector, "policy_types": types}
        if ingress is not None:
            spec["ingress"] = ingress
        if egress is not None:
            spec["egress"] = egress
        return k8s.networking.v1.NetworkPolicy(
            name,
            metadata=self._meta(name, annotations=annotations),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider, depends_on=[self.namespace]),
        )

    def place(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement:
        self._specs[spec.name] = spec
        if spec.cluster is not None:
            return self._postgres_cluster(spec, spec.cluster, parent, depends_on)
        if spec.companions or spec.init or any(v.shared_from for v in spec.volumes):
            # Only PostgreSQL on one host has them (its backup scheduler, an init for its
            # archiving, the credentials jobs on its socket), and here PostgreSQL is a cluster.
            raise ValueError(
                f"{spec.name}: companions, an init and shared volumes are Docker's (here: an operator's cluster)"
            )
        if spec.redis_ha is not None:
            return self._redis_ha(spec, spec.redis_ha, parent, depends_on)
        return self._workload(spec, parent, depends_on)

    def _redis_ha(
        self, proxy: ServiceSpec, ha: RedisHa, parent: pulumi.Resource, depends_on: list[pulumi.Resource]
    ) -> Placement:
        """Redis as three nodes and three Sentinels (StatefulSets, each pod named through its
        headless Service), behind the proxy spec (HAProxy, Service `redis`): the clients dial the
        proxy as they dialled the one Redis. Nodes first (the first one starts as primary when no
        Sentinel answers), then the Sentinels (they resolve the nodes' names at start), then the
        proxy. Each declared flow between them (talks_to) becomes a pair of NetworkPolicies."""
        # Every member is known before any flow is drawn: nodes and Sentinels dial each other.
        self._specs[ha.nodes.name] = ha.nodes
        self._specs[ha.sentinels.name] = ha.sentinels
        nodes = self._workload(ha.nodes, parent, depends_on)
        sentinels = self._workload(ha.sentinels, parent, depends_on + nodes.ready)
        front = self._workload(proxy, parent, depends_on + nodes.ready + sentinels.ready)
        return Placement(
            spec=proxy,
            ready=front.ready,
            networks=front.networks,
            exposed=front.exposed,
            non_root=True,
            read_only_root=all(p.read_only_root for p in (nodes, sentinels, front)),
            resources=nodes.resources + sentinels.resources + front.resources,
        )

    def _workload(self, spec: ServiceSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource]) -> Placement:
        """A Deployment, a StatefulSet (volumes) or a Job (run once), with its files, Service,
        PDB and flows."""
        # Several members with data each (the Redis HA set): a claim per pod from a template.
        replicated = spec.stateful and spec.replicas > 1
        claim_templates: list[k8s.core.v1.PersistentVolumeClaimArgsDict] = []
        made: list[pulumi.Resource] = []
        volumes: list[VolumeArgsDict] = []
        mounts: list[VolumeMountArgsDict] = []
        # Secrets the image reads from files go into its files volume; the rest stay env.
        secret_env, env_files, file_env = kubernetes_files.env_as_files(spec)
        env: list[EnvVarArgsDict] = [{"name": k, "value": v} for k, v in {**spec.env, **file_env}.items()]
        # Every ConfigMap and Secret the pod reads, by name: their checksums go on its template.
        checksums: dict[str, pulumi.Output[str]] = {}
        if secret_env:
            env_secret = k8s.core.v1.Secret(
                f"{spec.name}-env",
                metadata=self._meta(f"{spec.name}-env", _labels(spec.name)),
                type="Opaque",
                string_data=secret_env,
                opts=self._opts_for(parent, []),
            )
            made.append(env_secret)
            checksums[f"{spec.name}-env"] = kubernetes_files.checksum(secret_env)
            # Apps read secrets by reference; no secret value sits in a pod spec.
            env.extend(
                {"name": k, "value_from": {"secret_key_ref": {"name": env_secret.metadata["name"], "key": k}}}
                for k in secret_env
            )
        made += self._files(spec.name, spec.name, [*spec.files, *env_files], parent, volumes, mounts, checksums)
        sidecar_mounts: dict[str, list[VolumeMountArgsDict]] = {}
        for sidecar in spec.sidecars:
            own: list[VolumeMountArgsDict] = []
            made += self._files(
                f"{spec.name}-{sidecar.name}", spec.name, sidecar.files, parent, volumes, own, checksums
            )
            # Its own scratch space: nothing of the app's /tmp is shared with it.
            scratch = f"{sidecar.name}-tmp"
            volumes.append({"name": scratch, "empty_dir": {"medium": "Memory", "size_limit": "16Mi"}})
            own.append({"name": scratch, "mount_path": "/tmp"})
            sidecar_mounts[sidecar.name] = own
        exporters: list[ContainerArgsDict] = []
        for exporter in spec.exporters:
            own = []
            made += self._files(
                f"{spec.name}-{exporter.name}", spec.name, exporter.files, parent, volumes, own, checksums
            )
            scratch = f"{exporter.name}-tmp"
            volumes.append({"name": scratch, "empty_dir": {"medium": "Memory", "size_limit": "16Mi"}})
            own.append({"name": scratch, "mount_path": "/tmp"})
            exporters.append(_exporter_container(exporter, own, f"{spec.name}-env"))
        for path in spec.security.tmpfs:
            vol = f"tmp-{_file_key(path)}".replace("_", "-")
            volumes.append({"name": vol, "empty_dir": {"medium": "Memory", "size_limit": "64Mi"}})
            mounts.append({"name": vol, "mount_path": path})
        for v in spec.volumes:
            if replicated:
                claim_templates.append(
                    {
                        "metadata": {"name": v.name, "labels": _labels(spec.name)},
                        "spec": {
                            "access_modes": ["ReadWriteOnce"],
                            "storage_class_name": self._config.kubernetes.storage_class or None,
                            "resources": {"requests": {"storage": f"{v.size_gb}Gi"}},
                        },
                    }
                )
                mounts.append({"name": v.name, "mount_path": v.path})
                continue
            claim = k8s.core.v1.PersistentVolumeClaim(
                f"{spec.name}-{v.name}",
                # With WaitForFirstConsumer storage a claim binds only once its pod exists, and
                # the pod waits for the claim: waiting for Bound here would deadlock.
                metadata=self._meta(
                    f"{spec.name}-{v.name}", _labels(spec.name), annotations={"pulumi.com/skipAwait": "true"}
                ),
                spec={
                    "access_modes": ["ReadWriteOnce"],
                    "storage_class_name": self._config.kubernetes.storage_class or None,
                    "resources": {"requests": {"storage": f"{v.size_gb}Gi"}},
                },
                opts=self._opts_for(parent, [], stateful=True),
            )
            made.append(claim)
            volumes.append({"name": v.name, "persistent_volume_claim": {"claim_name": claim.metadata["name"]}})
            mounts.append({"name": v.name, "mount_path": v.path})
        if spec.acme is not None:
            # Required, yet no deadlock: the Certificate asks cert-manager for a temporary
            # certificate in the Secret at once, and the challenge does not need the edge.
            made += self._acme_certificate(spec, parent)
            volumes.append(
                {"name": "public-tls", "secret": {"secret_name": f"{spec.name}-public-tls", "default_mode": 0o440}}
            )
            mounts.append({"name": "public-tls", "mount_path": spec.acme.mount_dir, "read_only": True})

        pod = self._pod_spec(spec, env, volumes, mounts, sidecar_mounts, exporters)
        # checkov's exceptions for this workload, derived from its pod (kubernetes_checkov).
        skips = kubernetes_checkov.skip_annotations(pod)
        template_meta: ObjectMetaArgsDict = {"labels": _labels(spec.name)}
        if checksums:
            template_meta["annotations"] = kubernetes_files.checksum_annotations(checksums)
        template: PodTemplateSpecArgsDict = {"metadata": template_meta, "spec": pod}
        workload: pulumi.Resource
        if spec.run_once:
            job_name = f"{spec.name}-{spec.release[:10]}"
            pod["restart_policy"] = "Never"
            workload = k8s.batch.v1.Job(
                spec.name,
                metadata=self._meta(job_name, _labels(spec.name)) | {"annotations": skips},
                spec={"backoff_limit": 3, "active_deadline_seconds": 900, "template": template},
                # A new release is a new Job; Pulumi waits for it to complete.
                opts=pulumi.ResourceOptions.merge(
                    self._opts_for(parent, depends_on + made), pulumi.ResourceOptions(delete_before_replace=True)
                ),
            )
        elif spec.stateful:
            stateful_spec: k8s.apps.v1.StatefulSetSpecArgsDict = {
                "replicas": spec.replicas,
                "service_name": spec.name,
                "selector": {"match_labels": _selector(spec.name)},
                "template": template,
            }
            if claim_templates:
                stateful_spec["volume_claim_templates"] = claim_templates
                # The claims outlive the set (deleted or scaled down): the data is kept.
                stateful_spec["persistent_volume_claim_retention_policy"] = {
                    "when_deleted": "Retain",
                    "when_scaled": "Retain",
                }
            workload = k8s.apps.v1.StatefulSet(
                spec.name,
                metadata=self._meta(spec.name, _labels(spec.name)) | {"annotations": skips},
                spec=stateful_spec,
                opts=self._opts_for(parent, depends_on + made, stateful=True),
            )
        else:
            deployment_spec: k8s.apps.v1.DeploymentSpecArgsDict = {
                "selector": {"match_labels": _selector(spec.name)},
                # Never below the desired count during a rollout.
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": template,
            }
            if spec.autoscale is None:  # else the autoscaler owns the count (kubernetes_autoscaling)
                deployment_spec["replicas"] = spec.replicas
            departure = self._departure(spec)
            if departure is not None and departure.min_ready_seconds:
                deployment_spec["min_ready_seconds"] = departure.min_ready_seconds
            workload = k8s.apps.v1.Deployment(
                spec.name,
                metadata=self._meta(spec.name, _labels(spec.name)) | {"annotations": skips},
                spec=deployment_spec,
                opts=self._opts_for(parent, depends_on + made),
            )
        made.append(workload)
        exposed: list[str] = []
        if spec.ports and not spec.run_once:
            service, exposed = self._service(spec, parent)
            made.append(service)
        if spec.replicas > 1 and not spec.run_once:
            # A replicated set keeps its quorum (Sentinel: 2 of 3) and a replica to promote: one
            # member down at a time. Stateless replicas: at least one serving.
            selector: LabelSelectorArgsDict = {"match_labels": _selector(spec.name)}
            budget: k8s.policy.v1.PodDisruptionBudgetSpecArgsDict = (
                {"max_unavailable": 1, "selector": selector}
                if replicated
                else {"min_available": 1, "selector": selector}
            )
            made.append(
                k8s.policy.v1.PodDisruptionBudget(
                    spec.name,
                    metadata=self._meta(spec.name, _labels(spec.name)),
                    spec=budget,
                    opts=self._opts_for(parent, []),
                )
            )
        made += self._flows(spec, parent)
        made += self._autoscaler(spec, workload, parent)
        return Placement(
            spec=spec,
            ready=[workload],
            networks=[f"namespace {self.namespace_name} (default deny)"],
            exposed=exposed,
            non_root=True,
            read_only_root=spec.security.read_only_root,
            resources=made,
        )

    def _autoscaler(
        self, spec: ServiceSpec, workload: pulumi.Resource, parent: pulumi.Resource
    ) -> list[pulumi.Resource]:
        from components.platforms.kubernetes_autoscaling import ScalerSite, place_autoscaler

        site = ScalerSite(
            namespace=self.namespace_name,
            keda_namespace=self._config.kubernetes.keda_namespace,
            custom=self._custom,
            network_policy=self._network_policy,
            meta=self._meta,
            provider=self.provider,
            parent=parent,
            workload=workload,
        )
        return place_autoscaler(spec, site)

    def monitor(self, spec: MonitoringSpec, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """PodMonitors, the PrometheusRule and the scrape NetworkPolicies (kubernetes_monitoring)."""
        from components.platforms.kubernetes_monitoring import place_monitoring

        return place_monitoring(spec, parent, custom=self._custom, network_policy=self._network_policy)

    def _custom(
        self,
        name: str,
        api_version: str,
        kind: str,
        spec: dict[str, object],
        parent: pulumi.Resource,
        depends_on: list[pulumi.Resource],
        *,
        annotations: dict[str, str] | None = None,
        stateful: bool = False,
        labels: dict[str, str] | None = None,
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{name}-{kind.lower()}",
            api_version=api_version,
            kind=kind,
            metadata=self._meta(name, labels, annotations=annotations),
            spec=spec,
            opts=self._opts_for(parent, depends_on, stateful=stateful),
        )

    def _secret(
        self,
        name: str,
        service: str,
        data: dict[str, pulumi.Input[str]],
        parent: pulumi.Resource,
        type_: str = "Opaque",
    ) -> k8s.core.v1.Secret:
        # CloudNativePG watches only the Secrets its Cluster owns or that carry this label: with it,
        # a changed Secret (a renewed server certificate, a rotated password) is reloaded by the
        # instances; without it, they keep the old one until restarted (`kubectl cnpg reload`).
        return k8s.core.v1.Secret(
            name,
            metadata=self._meta(name, {**_labels(service), CNPG_RELOAD: "true"}),
            type=type_,
            string_data=data,
            opts=self._opts_for(parent, []),
        )

    def _postgres_cluster(
        self, spec: ServiceSpec, cluster: PostgresCluster, parent: pulumi.Resource, depends_on: list[pulumi.Resource]
    ) -> Placement:
        """PostgreSQL as a CloudNativePG Cluster: the operator runs the instances (one primary,
        hot standbys), fails over, serves `<name>-rw` (the primary), `-ro` and `-r` Services,
        keeps a PDB, and archives WAL through the Barman Cloud plugin; the stack's PKI signs the
        server certificate, so clients verify it against the same CA as every other hop."""
        name = spec.name
        labels = _labels(name)
        made: list[pulumi.Resource] = [
            self._secret(
                f"{name}-app",
                name,
                {"username": cluster.owner, "password": cluster.password},
                parent,
                "kubernetes.io/basic-auth",
            ),
            self._secret(
                f"{name}-server-tls",
                name,
                {"tls.crt": cluster.server_cert_pem, "tls.key": cluster.server_key_pem},
                parent,
                "kubernetes.io/tls",
            ),
            # ca.crt alone: the operator signs nothing with it (it has no key), it only serves it.
            self._secret(f"{name}-ca", name, {"ca.crt": cluster.ca_pem}, parent),
        ]
        roles = self._cluster_logins(name, cluster, parent, made)
        plugins: list[dict[str, object]] = []
        backup = cluster.backup
        if backup is not None:
            store_name = f"{name}-backups"
            made.append(
                self._secret(
                    f"{name}-backup-s3",
                    name,
                    {"ACCESS_KEY_ID": backup.access_key, "ACCESS_SECRET_KEY": backup.secret_key},
                    parent,
                )
            )
            configuration: dict[str, object] = {
                "destinationPath": f"s3://{backup.bucket}/",
                "endpointURL": backup.endpoint,
                "s3Credentials": {
                    "accessKeyId": {"name": f"{name}-backup-s3", "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": f"{name}-backup-s3", "key": "ACCESS_SECRET_KEY"},
                },
                "wal": {"compression": "gzip"},
                "data": {"compression": "gzip"},
            }
            if backup.ca_pem is not None:
                made.append(self._secret(f"{name}-backup-ca", name, {"ca.crt": backup.ca_pem}, parent))
                configuration["endpointCA"] = {"name": f"{name}-backup-ca", "key": "ca.crt"}
            made.append(
                self._custom(
                    store_name,
                    BARMAN_API,
                    "ObjectStore",
                    {"configuration": configuration, "retentionPolicy": backup.retention},
                    parent,
                    [],
                    labels=labels,
                )
            )
            plugins.append(
                {
                    "name": BARMAN_PLUGIN,
                    "isWALArchiver": True,
                    "parameters": {"barmanObjectName": store_name, "serverName": backup.server_name},
                }
            )
        resources = {"cpu": f"{spec.resources.cpu_millis}m", "memory": f"{spec.resources.memory_mb}Mi"}
        postgresql: dict[str, object] = {"parameters": cluster.parameters, "pg_hba": list(cluster.pg_hba)}
        if cluster.synchronous_replicas:
            # A commit waits for this many standbys (quorum among all of them).
            postgresql["synchronous"] = {"method": "any", "number": cluster.synchronous_replicas}
        bootstrap: dict[str, object] = {
            "initdb": {"database": cluster.database, "owner": cluster.owner, "secret": {"name": f"{name}-app"}}
        }
        external: list[dict[str, object]] = []
        if cluster.restore is not None and backup is not None:
            recovery: dict[str, object] = {
                "source": "origin",
                "database": cluster.database,
                "owner": cluster.owner,
                "secret": {"name": f"{name}-app"},
            }
            if cluster.restore.target_time:
                recovery["recoveryTarget"] = {"targetTime": cluster.restore.target_time}
            bootstrap = {"recovery": recovery}
            external = [
                {
                    "name": "origin",
                    "plugin": {
                        "name": BARMAN_PLUGIN,
                        "parameters": {
                            "barmanObjectName": f"{name}-backups",
                            "serverName": cluster.restore.server_name,
                        },
                    },
                }
            ]
        cluster_spec: dict[str, object] = {
            "instances": cluster.instances,
            "imageName": cluster.image,
            "postgresql": postgresql,
            "bootstrap": bootstrap,
            "storage": {"size": f"{cluster.storage_gb}Gi"},
            "resources": {"requests": resources, "limits": resources},
            "certificates": {"serverCASecret": f"{name}-ca", "serverTLSSecret": f"{name}-server-tls"},
            # The labels the stack's NetworkPolicies select a service's pods by.
            "inheritedMetadata": {"labels": labels},
            "enablePDB": True,
            "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
        }
        if self._config.kubernetes.storage_class:
            cluster_spec["storage"] = {
                "size": f"{cluster.storage_gb}Gi",
                "storageClass": self._config.kubernetes.storage_class,
            }
        if roles:
            cluster_spec["managed"] = {"roles": roles}
        if plugins:
            cluster_spec["plugins"] = plugins
        if external:
            cluster_spec["externalClusters"] = external
        if self._config.kubernetes.image_pull_secret:
            cluster_spec["imagePullSecrets"] = [{"name": self._config.kubernetes.image_pull_secret}]
        workload = self._custom(
            name,
            CNPG_API,
            "Cluster",
            cluster_spec,
            parent,
            depends_on + made,
            # pulumi-kubernetes waits for the Ready condition (generic await, pulumi.com/waitFor),
            # so the migrations start on a primary that accepts connections.
            annotations={"pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": "1200"},
            stateful=True,
            labels=labels,
        )
        made.append(workload)
        if backup is not None:
            made.append(
                self._custom(
                    f"{name}-daily",
                    CNPG_API,
                    "ScheduledBackup",
                    {
                        "schedule": backup.schedule,
                        "cluster": {"name": name},
                        "method": "plugin",
                        "pluginConfiguration": {"name": BARMAN_PLUGIN},
                        "backupOwnerReference": "self",
                        # A first base backup right away: archived WAL is useless without one.
                        "immediate": True,
                    },
                    parent,
                    [workload, *backup.store_ready],
                    labels=labels,
                )
            )
        made += self._flows(spec, parent)
        made += self._cluster_flows(spec, backup, parent)
        return Placement(
            spec=spec,
            ready=[workload],
            networks=[f"namespace {self.namespace_name} (default deny)"],
            exposed=[],
            non_root=True,
            read_only_root=True,
            resources=made,
        )

    def _cluster_logins(
        self, name: str, cluster: PostgresCluster, parent: pulumi.Resource, made: list[pulumi.Resource]
    ) -> list[dict[str, object]]:
        """The login roles as CloudNativePG managed roles: each present one a member of the owner
        with its password in its own basic-auth Secret (the format passwordSecret requires; the
        reload label has a changed one applied); a retired one first kept without login,
        password or membership (`NOLOGIN PASSWORD NULL`, the owner revoked), then `ensure:
        absent` (a plain DROP ROLE: it owns nothing, its sessions act as the owner). Roles not
        listed are left alone."""
        roles: list[dict[str, object]] = []
        for login in cluster.logins:
            if login.password is None and login.dropped:
                roles.append({"name": login.name, "ensure": "absent"})
                continue
            if login.password is None:
                roles.append(
                    {"name": login.name, "ensure": "present", "login": False, "disablePassword": True, "inRoles": []}
                )
                continue
            secret = f"{name}-login-{login.name.rpartition('_')[2]}"
            made.append(
                self._secret(
                    secret,
                    name,
                    {"username": login.name, "password": login.password},
                    parent,
                    "kubernetes.io/basic-auth",
                )
            )
            roles.append(
                {
                    "name": login.name,
                    "ensure": "present",
                    "login": True,
                    "superuser": False,
                    "createdb": False,
                    "createrole": False,
                    "replication": False,
                    "bypassrls": False,
                    "inherit": True,
                    "inRoles": [cluster.owner],
                    "passwordSecret": {"name": secret},
                }
            )
        return roles

    def _cluster_flows(
        self, spec: ServiceSpec, backup: ClusterBackup | None, parent: pulumi.Resource
    ) -> list[pulumi.Resource]:
        """What a CloudNativePG cluster needs beyond its clients: the operator polls each instance
        and connects to it; standbys stream from the primary; each instance's manager talks to the
        API server; the Barman Cloud sidecar ships WAL and base backups to an external bucket (a
        bucket on the stack's own store is a declared flow, in talks_to)."""
        me = _selector(spec.name)
        operator: NetworkPolicyPeerArgsDict = {
            "namespace_selector": {
                "match_labels": {"kubernetes.io/metadata.name": self._config.kubernetes.cnpg_namespace}
            }
        }
        peers: NetworkPolicyPeerArgsDict = {"pod_selector": {"match_labels": me}}
        ports: list[NetworkPolicyPortArgsDict] = [
            {"protocol": "TCP", "port": 5432},
            {"protocol": "TCP", "port": CNPG_STATUS_PORT},
        ]
        egress: list[NetworkPolicyEgressRuleArgsDict] = [
            {"to": [peers], "ports": ports},
            {
                "to": [{"ip_block": {"cidr": self._config.kubernetes.api_server_cidr}}],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
            },
        ]
        if backup is not None and backup.store_service is None:
            egress.append(
                {
                    "to": [{"ip_block": {"cidr": "0.0.0.0/0", "except_": PRIVATE_RANGES}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            )
        why = {
            OPERATOR_TRAFFIC: "CloudNativePG: the operator polls and connects to each instance, standbys stream "
            "from the primary, each instance manager talks to the API server"
            + ("; WAL and base backups to the external bucket on 443" if backup and not backup.store_service else "")
        }
        return [
            self._network_policy(
                f"{spec.name}-cluster-ingress",
                me,
                parent=parent,
                ingress=[{"from_": [operator], "ports": ports}, {"from_": [peers], "ports": ports}],
                annotations=why,
            ),
            self._network_policy(f"{spec.name}-cluster-egress", me, parent=parent, egress=egress, annotations=why),
        ]

    def _files(
        self,
        name: str,
        service: str,
        files: list[ConfigFile],
        parent: pulumi.Resource,
        volumes: list[VolumeArgsDict],
        mounts: list[VolumeMountArgsDict],
        checksums: dict[str, pulumi.Output[str]],
    ) -> list[pulumi.Resource]:
        """``files`` as a ConfigMap and a Secret named after ``name`` (the service, or one of
        its sidecars), mounted together as the directory CONFIG_DIR (kubernetes_files)."""
        made: list[pulumi.Resource] = []
        names: dict[bool, str] = {}
        for secret, chosen in (
            (False, [f for f in files if not f.secret]),
            (True, [f for f in files if f.secret]),
        ):
            if not chosen:
                continue
            kind = "secret-files" if secret else "files"
            obj_name = f"{name}-{kind}"
            data = {_file_key(f.path): f.content for f in chosen}
            meta = self._meta(obj_name, _labels(service))
            if secret:
                obj: pulumi.Resource = k8s.core.v1.Secret(
                    obj_name, metadata=meta, type="Opaque", string_data=data, opts=self._opts_for(parent, [])
                )
            else:
                obj = k8s.core.v1.ConfigMap(obj_name, metadata=meta, data=data, opts=self._opts_for(parent, []))
            made.append(obj)
            names[secret] = obj_name
            checksums[obj_name] = kubernetes_files.checksum(data)
        if names:
            volume = "files" if name == service else f"{name}-files"
            volumes.append(kubernetes_files.config_volume(volume, names.get(False), names.get(True), files))
            mounts.append({"name": volume, "mount_path": CONFIG_DIR, "read_only": True})
        return made

    def _pod_spec(
        self,
        spec: ServiceSpec,
        env: list[EnvVarArgsDict],
        volumes: list[VolumeArgsDict],
        mounts: list[VolumeMountArgsDict],
        sidecar_mounts: dict[str, list[VolumeMountArgsDict]],
        exporters: list[ContainerArgsDict] | None = None,
    ) -> PodSpecArgsDict:
        sec = spec.security
        uid = sec.run_as_user if sec.run_as_user not in (None, 0) else 65532
        gid = sec.run_as_group or uid
        resources = {"cpu": f"{spec.resources.cpu_millis}m", "memory": f"{spec.resources.memory_mb}Mi"}
        container: ContainerArgsDict = {
            "name": spec.name,
            "image": spec.image,
            "image_pull_policy": "IfNotPresent",
            "env": env,
            "ports": [{"name": p.name, "container_port": p.port, "protocol": "TCP"} for p in spec.ports],
            "volume_mounts": mounts,
            # Requests equal limits: Guaranteed QoS, the last to be evicted.
            "resources": {"requests": resources, "limits": resources},
            "security_context": _container_security(sec),
        }
        if spec.command:
            container["command"] = spec.command
        if spec.args:
            container["args"] = spec.args
        if spec.probe is not None and not spec.run_once:
            container["readiness_probe"] = _probe(spec.probe, 5)
            container["liveness_probe"] = _probe(spec.probe, spec.probe.start_period_seconds)
        pod: PodSpecArgsDict = {
            "automount_service_account_token": False,
            "enable_service_links": False,
            "security_context": {
                "run_as_non_root": True,
                "run_as_user": uid,
                "run_as_group": gid,
                "fs_group": gid,
                "fs_group_change_policy": "OnRootMismatch",
                "seccomp_profile": {"type": "RuntimeDefault"},
            },
            # Exporters: containers beside the service, reading it over loopback.
            "containers": [container, *(exporters or [])],
            "volumes": volumes,
        }
        if self._config.kubernetes.image_pull_secret:
            pod["image_pull_secrets"] = [{"name": self._config.kubernetes.image_pull_secret}]
        if spec.sidecars:
            # Native sidecars (Kubernetes >= 1.29): init containers that keep running; the app
            # container starts once each one's startup probe passes, and they stop after it.
            pod["init_containers"] = [_sidecar_container(s, sidecar_mounts[s.name]) for s in spec.sidecars]
        if spec.stop_grace_seconds is not None:
            pod["termination_grace_period_seconds"] = spec.stop_grace_seconds
        departure = self._departure(spec)
        if departure is not None:
            # A preStop pause while its clients drop the pod, a grace that covers its drain.
            kubernetes_handover.apply(departure, container, pod)
        if spec.replicas > 1:
            pod["topology_spread_constraints"] = [
                {
                    "max_skew": 1,
                    "topology_key": "kubernetes.io/hostname",
                    "when_unsatisfiable": "ScheduleAnyway",
                    "label_selector": {"match_labels": _selector(spec.name)},
                }
            ]
            if self._load_balanced(spec):
                # With externalTrafficPolicy Local a node's edge pods are its only path in: never
                # two on one node while a schedulable node has fewer (taints honoured, so a
                # control-plane node never counts as an empty one).
                spread = pod["topology_spread_constraints"][0]
                spread["when_unsatisfiable"] = "DoNotSchedule"
                spread["node_taints_policy"] = "Honor"
        return pod

    def _load_balanced(self, spec: ServiceSpec) -> bool:
        return bool(_public(spec)) and self._config.kubernetes.exposure == "loadBalancer"

    def _departure(self, spec: ServiceSpec) -> kubernetes_handover.Departure | None:
        return kubernetes_handover.departure(spec, public=_public(spec), load_balanced=self._load_balanced(spec))

    def _service(self, spec: ServiceSpec, parent: pulumi.Resource) -> tuple[pulumi.Resource, list[str]]:
        public = _public(spec)
        load_balancer = self._load_balanced(spec)
        ports: list[ServicePortArgsDict] = [
            {
                "name": p.name,
                "port": (p.published if load_balancer and p.published else p.port),
                "target_port": p.name,
                "protocol": "TCP",
            }
            for p in spec.ports
        ]
        service_spec: k8s.core.v1.ServiceSpecArgsDict = {
            "type": "LoadBalancer" if load_balancer else "ClusterIP",
            "selector": _selector(spec.name),
            "ports": ports,
        }
        if load_balancer:
            # Local: the cloud LB delivers to a node with a ready edge pod, never through another
            # node's SNAT, so nginx sees the client's address (its rate limit is per client). Nodes
            # without one fail the LB's check of healthCheckNodePort and get no traffic: the edge
            # spreads its pods over nodes (_pod_spec).
            service_spec["external_traffic_policy"] = "Local"
        if spec.stateful and spec.replicas > 1:
            # Headless: each member has a stable name (<pod>.<service>.<ns>.svc.cluster.local),
            # resolvable from its start so the members can find each other before they are ready.
            service_spec["cluster_ip"] = "None"
            service_spec["publish_not_ready_addresses"] = True
        service = k8s.core.v1.Service(
            spec.name,
            metadata=self._meta(spec.name, _labels(spec.name), annotations={PORTS_KEY: ports_record(spec)}),
            spec=service_spec,
            opts=self._opts_for(parent, []),
        )
        exposed: list[str] = []
        if load_balancer:
            exposed = [f"LoadBalancer:{p.published}->{p.port}" for p in spec.ports if p.published]
        elif public:
            exposed = self._http_route(spec, parent)
        return service, exposed

    def _gateway_parent(self) -> _ParentReference:
        settings = self._config.kubernetes
        parent_ref: _ParentReference = {"name": settings.gateway_name}
        if settings.gateway_namespace:
            parent_ref["namespace"] = settings.gateway_namespace
        return parent_ref

    def _http_route(self, spec: ServiceSpec, parent: pulumi.Resource) -> list[str]:
        settings = self._config.kubernetes
        http = spec.port("http")
        route: _HTTPRouteSpec = {
            "parentRefs": [self._gateway_parent()],
            "hostnames": [self._config.domain],
            "rules": [{"backendRefs": [{"name": spec.name, "port": http.port}]}],
        }
        k8s.apiextensions.CustomResource(
            f"{spec.name}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=self._meta(spec.name, _labels(spec.name)),
            spec=route,
            opts=self._opts_for(parent, []),
        )
        return [f"Gateway {settings.gateway_namespace or self.namespace_name}/{settings.gateway_name} -> {http.port}"]

    def _edge_ingress(self, spec: ServiceSpec) -> NetworkPolicyIngressRuleArgsDict:
        settings = self._config.kubernetes
        if settings.exposure != "gateway":
            return {"ports": [{"protocol": "TCP", "port": p.port} for p in spec.ports if p.published]}
        # Behind a Gateway only its proxies' namespace, on the port the HTTPRoute names: no other
        # pod can reach the listener that believes X-Forwarded-Proto (from the gateway's addresses).
        proxies = settings.gateway_proxy_namespace or settings.gateway_namespace or self.namespace_name
        return {
            "from_": [{"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": proxies}}}],
            "ports": [{"protocol": "TCP", "port": spec.port("http").port}],
        }

    def _acme_certificate(self, spec: ServiceSpec, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """The Certificate cert-manager issues and renews into the Secret the edge mounts, and
        for HTTP-01 the Issuer whose solver the Gateway routes to (with the solver's ingress).

        The Secret is rewritten in place; the edge's six-hourly nginx reload (its command, the
        same on Docker) serves each new certificate, so nothing here watches the Secret."""
        acme = spec.acme
        assert acme is not None
        made: list[pulumi.Resource] = []
        issuer_ref: _IssuerRef = {"kind": "ClusterIssuer", "name": acme.cluster_issuer}
        if acme.solver == "http01":
            # The config allows HTTP-01 only behind a Gateway (tls.acmeSolver): cert-manager adds
            # an HTTPRoute for /.well-known/acme-challenge/<token> (an Exact match, which wins over
            # the edge's route) to the same Gateway, so the challenge never reaches the edge.
            assert self._config.kubernetes.exposure == "gateway", "tls.acmeSolver http01 needs a Gateway"
            issuer_ref = {"kind": "Issuer", "name": f"{spec.name}-acme"}
            issuer: _IssuerSpec = {
                "acme": {
                    "server": acme.server,
                    "email": acme.email,
                    "privateKeySecretRef": {"name": f"{spec.name}-acme-account"},
                    "solvers": [
                        {
                            "http01": {
                                "gatewayHTTPRoute": {
                                    "parentRefs": [{**self._gateway_parent(), "kind": "Gateway"}],
                                    # Not cert-manager's default NodePort: the Gateway reaches the
                                    # solver inside the cluster; no node port opens for it.
                                    "serviceType": "ClusterIP",
                                    # The namespace enforces Pod Security restricted.
                                    "podTemplate": {
                                        "spec": {
                                            "securityContext": {
                                                "runAsNonRoot": True,
                                                "seccompProfile": {"type": "RuntimeDefault"},
                                            }
                                        }
                                    },
                                }
                            }
                        }
                    ],
                }
            }
            made.append(
                k8s.apiextensions.CustomResource(
                    f"{spec.name}-acme-issuer",
                    api_version="cert-manager.io/v1",
                    kind="Issuer",
                    metadata=self._meta(f"{spec.name}-acme", _labels(spec.name)),
                    spec=issuer,
                    opts=self._opts_for(parent, []),
                )
            )
            # The solver pods run here, under the default deny: the Gateway (like the world to
            # the edge) reaches their port, nothing else.
            made.append(
                self._network_policy(
                    "acme-solver-from-world",
                    ACME_SOLVER_LABELS,
                    parent=parent,
                    ingress=[{"ports": [{"protocol": "TCP", "port": ACME_SOLVER_PORT}]}],
                )
            )
        certificate: _CertificateSpec = {
            "secretName": f"{spec.name}-public-tls",
            "dnsNames": [acme.domain],
            "issuerRef": issuer_ref,
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "renewBefore": "720h",
        }
        annotations = {
            # cert-manager writes a temporary self-signed certificate into the Secret before the
            # first issuance, so the edge (which mounts it) starts at once instead of waiting.
            "cert-manager.io/issue-temporary-certificate": "true",
            # Issuance (DNS propagation, the CA) may take minutes; the edge does not wait for it.
            "pulumi.com/skipAwait": "true",
        }
        made.append(
            k8s.apiextensions.CustomResource(
                f"{spec.name}-public-certificate",
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata=self._meta(f"{spec.name}-public-tls", _labels(spec.name), annotations=annotations),
                spec=certificate,
                opts=self._opts_for(parent, made),
            )
        )
        return made

    def _flows(self, spec: ServiceSpec, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """NetworkPolicies for this service's flows: each allowed on both ends, nothing else."""
        made: list[pulumi.Resource] = []
        me = _selector(spec.name)
        for flow in flows_of(spec, self._specs):
            target = flow.server
            ports: list[NetworkPolicyPortArgsDict] = [{"protocol": "TCP", "port": p.port} for p in flow.ports]
            annotations = {FLOW_KEY: json.dumps([flow.describe()])}
            made.append(
                self._network_policy(
                    f"{spec.name}-to-{target}",
                    me,
                    parent=parent,
                    egress=[{"to": [{"pod_selector": {"match_labels": _selector(target)}}], "ports": ports}],
                    annotations=annotations,
                )
            )
            made.append(
                self._network_policy(
                    f"{target}-from-{spec.name}",
                    _selector(target),
                    parent=parent,
                    ingress=[{"from_": [{"pod_selector": {"match_labels": me}}], "ports": ports}],
                    annotations=annotations,
                )
            )
        if Zone.EGRESS in spec.zones:
            made.append(
                self._network_policy(
                    f"{spec.name}-https-egress",
                    me,
                    parent=parent,
                    egress=[
                        {
                            "to": [{"ip_block": {"cidr": "0.0.0.0/0", "except_": PRIVATE_RANGES}}],
                            "ports": [{"protocol": "TCP", "port": 443}],
                        }
                    ],
                )
            )
        if any(p.published for p in spec.ports) and Zone.FRONTEND in spec.zones:
            # The edge is the one service the world (or the Gateway) reaches.
            made.append(
                self._network_policy(
                    f"{spec.name}-from-world",
                    me,
                    parent=parent,
                    ingress=[self._edge_ingress(spec)],
                )
            )
        return made


def _public(spec: ServiceSpec) -> bool:
    """The edge: published ports in the frontend zone, and a backend to send traffic to."""
    return any(p.published for p in spec.ports) and Zone.FRONTEND in spec.zones and bool(spec.talks_to)


def _container_security(sec: Security) -> SecurityContextArgsDict:
    uid = sec.run_as_user if sec.run_as_user not in (None, 0) else 65532
    return {
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": sec.read_only_root,
        "run_as_non_root": True,
        "run_as_user": uid,
        "run_as_group": sec.run_as_group or uid,
        "capabilities": {"drop": ["ALL"], "add": list(sec.cap_add) or None},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def _sidecar_container(sidecar: Sidecar, mounts: list[VolumeMountArgsDict]) -> ContainerArgsDict:
    resources = {"cpu": f"{sidecar.resources.cpu_millis}m", "memory": f"{sidecar.resources.memory_mb}Mi"}
    # Commands: a TCP probe dials the pod IP, and the tunnel listens on loopback only.
    working: ProbeArgsDict = {
        "exec_": {"command": sidecar.probe_command},
        "period_seconds": 2,
        "timeout_seconds": 5,
        "failure_threshold": 60,
    }
    listening: ProbeArgsDict = {
        "exec_": {"command": sidecar.alive_command},
        "period_seconds": 10,
        "timeout_seconds": 5,
        "failure_threshold": 3,
    }
    return {
        "name": sidecar.name,
        "image": sidecar.image,
        "image_pull_policy": "IfNotPresent",
        "command": sidecar.command,
        "restart_policy": "Always",
        "startup_probe": working,
        "liveness_probe": listening,
        "volume_mounts": mounts,
        "resources": {"requests": resources, "limits": resources},
        "security_context": _container_security(sidecar.security),
    }


def _exporter_container(
    exporter: Exporter, mounts: list[VolumeMountArgsDict], service_secret: str
) -> ContainerArgsDict:
    if exporter.secret_env:
        raise ValueError(f"{exporter.name}: an exporter's own secrets are Docker's; here it reads its service's Secret")
    resources = {"cpu": f"{exporter.resources.cpu_millis}m", "memory": f"{exporter.resources.memory_mb}Mi"}
    env: list[EnvVarArgsDict] = [{"name": k, "value": v} for k, v in exporter.env.items()]
    env.extend(
        {"name": k, "value_from": {"secret_key_ref": {"name": service_secret, "key": key}}}
        for k, key in exporter.env_from_service_secret.items()
    )
    # HTTP probes at the pod's address: an exporter listens on every interface for Prometheus.
    health: ProbeArgsDict = {
        "http_get": {"path": exporter.health_path, "port": exporter.name, "scheme": "HTTP"},
        "period_seconds": 10,
        "timeout_seconds": 5,
        "failure_threshold": 6,
    }
    container: ContainerArgsDict = {
        "name": exporter.name,
        "image": exporter.image,
        "image_pull_policy": "IfNotPresent",
        "ports": [{"name": exporter.name, "container_port": exporter.port, "protocol": "TCP"}],
        "env": env,
        "volume_mounts": mounts,
        "readiness_probe": health,
        "liveness_probe": {**health, "initial_delay_seconds": 10},
        "resources": {"requests": resources, "limits": resources},
        "security_context": _container_security(exporter.security),
    }
    if exporter.args:
        container["args"] = exporter.args
    return container

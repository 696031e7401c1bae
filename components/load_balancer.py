"""The edge: nginx terminating TLS, /api -> api, / -> web; the only service the world reaches."""

from __future__ import annotations

import pulumi

from components import api, web
from components.conf import nginx
from components.conf.nginx_base import workers_for
from components.config import Environment, StackConfig, Target, supplied_secret
from components.monitoring import edge_exporters, exporters_declared
from components.pki import InternalPki
from components.platforms.base import Platform
from components.service import Service
from components.spec import (
    CONFIG_DIR,
    AcmeCertificate,
    ConfigFile,
    Handover,
    Port,
    Probe,
    Routes,
    Security,
    ServiceSpec,
    Zone,
)

NAME = "edge"
HTTP_PORT = 8080
HTTPS_PORT = 8443
UID = 101  # nginx-unprivileged
CONF_PATH = f"{CONFIG_DIR}/nginx.conf"
# The internal or supplied certificate comes with the config files; an ACME certificate comes
# from the platform's certificate store (a volume, a Secret), mounted at its own path.
TLS_DIR = f"{CONFIG_DIR}/tls"
ACME_TLS_DIR = "/etc/nginx/tls"
ACME_WEBROOT = "/var/www/acme"
CACHE_DIR = "/var/cache/aixsss"
# Where the platform writes api's and web's instances, where it announces them (spec.Routes).
ROUTES_DIR = "/etc/nginx/routes"
# A new instance of api or web is taken once it answers its health check from here (the edge's
# own probe tool; through the api's draining front, as that front's Docker check goes).
ROUTE_CHECK = ("curl", "-fsS", "-o", "/dev/null", "--max-time", "5")
# nginx's graceful reload, and a wait until it took: the master starts workers on the new config,
# then tells the old ones to finish what they have (they retitle themselves "worker process is
# shutting down"). A config it refuses leaves the old workers as they were: this fails after 10 s.
RELOAD_SCRIPT = (
    'title() { tr "\\0" "\\n" < "/proc/$1/cmdline" 2>/dev/null | head -n 1; }; '
    "workers() { for p in /proc/[0-9]*; do p=${p#/proc/}; "
    '[ "$(title "$p")" = "nginx: worker process" ] && echo "$p"; done; }; '
    f"old=$(workers); nginx -c {CONF_PATH} -s reload || exit 1; "
    "for i in $(seq 100); do left=; "
    'for p in $old; do [ "$(title "$p")" = "nginx: worker process" ] && left=1; done; '
    '[ -z "$left" ] && exit 0; sleep 0.1; done; exit 1'
)


class LoadBalancer(Service):
    tls = "TLS 1.2/1.3, HTTP redirected, HSTS"
    auth = "none at the edge (rate limit on /api)"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        pki: InternalPki,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("LoadBalancer", NAME, opts)
        edge = config.edge
        tls_dir = ACME_TLS_DIR if config.tls.public_certificate == "acme" else TLS_DIR
        self.nginx_settings = nginx.EdgeSettings(
            server_name=config.domain,
            api_upstream=f"{platform.resolvable_name(api.NAME)}:{api.PORT}",
            web_upstream=f"{platform.resolvable_name(web.NAME)}:{web.PORT}",
            resolver=platform.resolver,
            connect_timeout_seconds=nginx.UPSTREAM_CONNECT_TIMEOUT_SECONDS[platform.name],
            routes_dir=ROUTES_DIR if platform.announces_routes else None,
            certificate_path=f"{tls_dir}/tls.crt",
            key_path=f"{tls_dir}/tls.key",
            http_port=HTTP_PORT,
            https_port=HTTPS_PORT,
            client_max_body_size_mb=edge.client_max_body_size_mb,
            workers=workers_for(edge.cpu_millis),
            api_rate_per_second=edge.api_rate_per_second,
            api_rate_burst=edge.api_rate_burst,
            api_rate_delay=edge.api_rate_delay,
            # lego fills the webroot on a Docker host; on Kubernetes cert-manager's solver answers
            # HTTP-01 on the Gateway (or DNS-01 is used) and nothing fills one.
            cache_dir=CACHE_DIR,
            acme_webroot=ACME_WEBROOT if config.target is Target.DOCKER else None,
            trust_forwarded_proto=config.target is Target.KUBERNETES and config.kubernetes.exposure == "gateway",
            trusted_proxies=tuple(config.kubernetes.gateway_addresses),
            # stub_status on loopback and the status log to mtail, for the exporters in the pod.
            exporters=exporters_declared(config),
        )
        self.nginx_conf = nginx.render(self.nginx_settings)
        self.certificate_source = config.tls.public_certificate
        files = [ConfigFile(CONF_PATH, self.nginx_conf)]
        acme = None
        self.certificate = None
        if config.tls.public_certificate == "self-signed":
            self.certificate = pki.issue("public", [config.domain])
            files += self._tls_files(self.certificate.cert_pem, self.certificate.key_pem)
        elif config.tls.public_certificate == "supplied":
            cert, key = supplied_secret("publicCertificatePem"), supplied_secret("publicPrivateKeyPem")
            assert cert is not None and key is not None  # load_stack_config checked both are set
            files += self._tls_files(cert, key)
        else:
            # Only lego (Docker) needs a certificate to start on; cert-manager writes a temporary one.
            bootstrap = pki.issue("public-bootstrap", [config.domain]) if config.target is Target.DOCKER else None
            acme = AcmeCertificate(
                domain=config.domain,
                email=config.tls.acme_email,
                server=config.tls.acme_server,
                cluster_issuer=config.tls.cluster_issuer,
                solver=config.tls.acme_solver,
                mount_dir=ACME_TLS_DIR,
                webroot=ACME_WEBROOT,
                bootstrap_cert_pem=bootstrap.cert_pem if bootstrap else None,
                bootstrap_key_pem=bootstrap.key_pem if bootstrap else None,
            )
        # Dev binds to loopback; other environments face the network.
        bind = "127.0.0.1" if config.environment is Environment.DEV else "0.0.0.0"
        spec = ServiceSpec(
            name=NAME,
            image=config.images.edge,
            resources=edge,
            # The hashed-asset cache gets a writable directory of its own beside /tmp.
            security=Security(run_as_user=UID, run_as_group=UID, tmpfs=("/tmp", CACHE_DIR)),
            probe=Probe(
                command=["curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{HTTP_PORT}/healthz"],
                http_path="/healthz",
                port=HTTP_PORT,
            ),
            # The config comes from CONFIG_DIR; with ACME, a reload every six hours serves
            # renewed certificates without a restart (lego's volume on Docker, the Secret that
            # cert-manager rewrites in place on Kubernetes: one mechanism for both). On Docker
            # the platform runs this beside its routes' watcher (spec.Routes).
            command=[
                "/bin/sh",
                "-c",
                f"while sleep 21600; do nginx -c {CONF_PATH} -s reload; done & "
                f"exec nginx -c {CONF_PATH} -g 'daemon off;'",
            ]
            if acme
            else ["nginx", "-c", CONF_PATH, "-g", "daemon off;"],
            ports=[
                Port("http", HTTP_PORT, published=80, host_ip=bind),
                Port("https", HTTPS_PORT, published=443, host_ip=bind, tls=True),
            ],
            files=files,
            replicas=edge.replicas,
            zones=frozenset({Zone.FRONTEND}),
            talks_to=(api.NAME, web.NAME),
            acme=acme,
            # nginx finishes what it proxies on SIGQUIT (the image's STOPSIGNAL); the longest is an
            # api request. On Docker its published ports cannot overlap (spec.Handover).
            handover=Handover(drain_seconds=nginx.API_READ_TIMEOUT_SECONDS),
            routes=Routes(
                directory=ROUTES_DIR,
                line=nginx.UPSTREAM_SERVER,
                check=ROUTE_CHECK,
                reload=("/bin/sh", "-c", RELOAD_SCRIPT),
            ),
            exporters=edge_exporters(config) if exporters_declared(config) else (),
        )
        # nginx needs neither api nor web to start: it answers 502 until they serve. So the edge
        # starts beside them (issue 14: the deploy's critical path). On Kubernetes `resolve`
        # (nginx >= 1.27.3) follows their Services; on Docker their instances arrive through the
        # routes (spec.Routes), each once it answers its check.
        self._place(platform, spec, [])

    @staticmethod
    def _tls_files(cert: pulumi.Input[str], key: pulumi.Input[str]) -> list[ConfigFile]:
        return [
            ConfigFile(f"{TLS_DIR}/tls.crt", cert),
            ConfigFile(f"{TLS_DIR}/tls.key", key, secret=True, mode=0o600, owner=UID),
        ]

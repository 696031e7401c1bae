"""PostgreSQL 16: TLS required, scram-sha-256 only, reachable from api/worker/migrations."""

from __future__ import annotations

import dataclasses

import pulumi

from components.conf import postgres
from components.conf.urls import url_quote
from components.config import StackConfig
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import (
    ClusterBackup,
    ClusterRestore,
    ConfigFile,
    Port,
    PostgresCluster,
    Probe,
    Security,
    ServiceSpec,
    Volume,
    secret_env,
)

NAME = "postgres"
DATABASE = "aixsss"
USER = "aixsss"
PORT = 5432
UID = 999  # the image's postgres user
# CloudNativePG's Services: the primary (clients), any instance, the standbys.
CLUSTER_SERVICES = (f"{NAME}-rw", f"{NAME}-r", f"{NAME}-ro")


def certificate_names(platform: Platform) -> list[str]:
    """Every name a client may reach PostgreSQL by: the service, or a cluster's Services."""
    services = CLUSTER_SERVICES if platform.runs_postgres_clusters else (NAME,)
    names: list[str] = []
    for service in services:
        names += [n for n in platform.dns_names(service) if n not in names]
    return names


class Database(Service):
    tls = "required (hostssl only, TLS 1.2+)"
    auth = "scram-sha-256 password"

    def __init__(
        self,
        config: StackConfig,
        platform: Platform,
        password: pulumi.Output[str],
        certificate: Certificate,
        backup: ClusterBackup | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("Database", NAME, opts)
        self.backup = backup if platform.runs_postgres_clusters else None
        settings = postgres.PostgresSettings(
            cert_path=f"{TLS_DIR}/server.crt",
            key_path=f"{TLS_DIR}/server.key",
            hba_path="/etc/aixsss/pg_hba.conf",
            max_connections=config.database.max_connections,
            # The config model's value: its memory rule checks the same number.
            shared_buffers_mb=config.database.shared_buffers_mb,
        )
        self.settings = settings
        self.postgresql_conf = postgres.render_conf(settings)
        self.pg_hba_conf = postgres.render_hba(settings)
        publish = config.docker.publish_data_ports
        spec = ServiceSpec(
            name=NAME,
            image=config.images.postgres,
            resources=config.database,
            security=Security(run_as_user=UID, run_as_group=UID, tmpfs=("/tmp", "/var/run/postgresql")),
            probe=Probe(command=["pg_isready", "-U", USER, "-d", DATABASE], start_period_seconds=30),
            args=["postgres", "-c", "config_file=/etc/aixsss/postgresql.conf"],
            env={
                "POSTGRES_DB": DATABASE,
                "POSTGRES_USER": USER,
                "PGDATA": "/var/lib/postgresql/data/pgdata",
                "POSTGRES_INITDB_ARGS": "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
            },
            secret_env=secret_env({"POSTGRES_PASSWORD": password}),
            ports=[
                Port(
                    "postgres",
                    PORT,
                    published=PORT if publish else None,
                    host_ip="127.0.0.1",
                    tls=True,
                    auth="scram-sha-256",
                )
            ],
            volumes=[Volume("data", "/var/lib/postgresql/data", config.database.storage_gb)],
            # WAL and base backups go to the bundled store's backups bucket (a declared flow).
            talks_to=(backup.store_service,) if self.backup and backup and backup.store_service else (),
            files=[
                ConfigFile("/etc/aixsss/postgresql.conf", self.postgresql_conf),
                ConfigFile(settings.hba_path, self.pg_hba_conf),
                ConfigFile(settings.cert_path, certificate.cert_pem),
                ConfigFile(CA_PATH, certificate.ca_pem),
                # Postgres refuses a key readable by others.
                ConfigFile(settings.key_path, certificate.key_pem, secret=True, mode=0o600, owner=UID),
            ],
        )
        if platform.runs_postgres_clusters:
            spec = dataclasses.replace(spec, cluster=self._cluster(config, password, certificate))
        self._place(platform, spec, [])
        host = platform.dns_names(CLUSTER_SERVICES[0] if platform.runs_postgres_clusters else NAME)[0]
        # Prisma's TLS dialect: sslcert is the CA that must have signed the server certificate.
        # connection_limit caps each process's pool so the stack fits max_connections (a config
        # rule checks the sum); Prisma percent-decodes the password, so any character is safe.
        query = (
            f"sslmode=require&sslaccept=strict&sslcert={CA_PATH}&connection_limit={config.database.connection_limit}"
        )
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{USER}:",
                pulumi.Output.from_input(password).apply(url_quote),
                f"@{host}:{PORT}/{DATABASE}?{query}",
            )
        )

    def _cluster(self, config: StackConfig, password: pulumi.Output[str], certificate: Certificate) -> PostgresCluster:
        """The same database as a CloudNativePG cluster: the operator writes postgresql.conf and
        pg_hba.conf itself, so the settings travel as parameters and extra pg_hba lines."""
        db = config.database
        restore = None
        if config.backup.restore_from:
            restore = ClusterRestore(config.backup.restore_from, config.backup.restore_target_time)
        return PostgresCluster(
            image=config.images.postgres_cluster,
            instances=db.instances,
            synchronous_replicas=db.synchronous_replicas,
            database=DATABASE,
            owner=USER,
            password=password,
            server_cert_pem=certificate.cert_pem,
            server_key_pem=certificate.key_pem,
            ca_pem=certificate.ca_pem,
            parameters={
                "max_connections": str(db.max_connections),
                "shared_buffers": f"{db.shared_buffers_mb}MB",
                "ssl_min_protocol_version": "TLSv1.2",
                "password_encryption": "scram-sha-256",
                "log_connections": "on",
                "log_disconnections": "on",
            },
            # Between the operator's fixed rules (local peer, the streaming_replica's TLS client
            # certificate) and its catch-all `host all all all <password_encryption>`: the app's user
            # over TLS only, and nothing else, as on Docker.
            pg_hba=(
                f"hostssl {DATABASE} {USER} all scram-sha-256",
                "hostnossl all all all reject",
                "host all all all reject",
            ),
            storage_gb=db.storage_gb,
            backup=self.backup,
            restore=restore,
        )

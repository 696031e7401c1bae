"""PostgreSQL 16: TLS required, scram-sha-256 only, reachable from api/worker/migrations."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import pulumi

from components.conf import pgbackrest, postgres
from components.conf.urls import url_quote
from components.config import StackConfig
from components.monitoring import exporters_declared, postgres_exporters
from components.pki import Certificate
from components.platforms.base import Platform
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import (
    ClusterBackup,
    ClusterRestore,
    Companion,
    ConfigFile,
    Exporter,
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
# PostgreSQL plus pgBackRest, built on the Docker host when images.postgresPgbackrest is empty.
IMAGE_DOCKERFILE = Path(__file__).resolve().parent.parent / "images" / "postgres" / "Dockerfile"
# The trust store of an external S3 endpoint (the image installs ca-certificates).
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


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
        self.backup = backup
        # Where an operator runs PostgreSQL it archives and backs up (Barman Cloud); on a single
        # host pgBackRest does, from the image with pgBackRest, beside the server.
        self.pgbackrest = None if backup is None or platform.runs_postgres_clusters else _pgbackrest(config, backup)
        settings = postgres.PostgresSettings(
            cert_path=f"{TLS_DIR}/server.crt",
            key_path=f"{TLS_DIR}/server.key",
            hba_path="/etc/aixsss/pg_hba.conf",
            max_connections=config.database.max_connections,
            # The config model's value: its memory rule checks the same number.
            shared_buffers_mb=config.database.shared_buffers_mb,
            archive=tuple(pgbackrest.archive_lines(self.pgbackrest)) if self.pgbackrest else (),
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
            # Over TCP, as the clients come: the image's first start runs initdb's temporary server
            # on the socket only, and a socket probe would call that healthy (clients then fail).
            probe=Probe(
                command=["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, "-d", DATABASE],
                start_period_seconds=30,
            ),
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
        else:
            if self.pgbackrest is not None and backup is not None:
                spec = _with_pgbackrest(spec, config, platform, self.pgbackrest, backup, password)
            if exporters_declared(config):
                spec = dataclasses.replace(spec, exporters=_exporters(config, spec, certificate, self.pgbackrest))
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


def _pgbackrest(config: StackConfig, backup: ClusterBackup) -> pgbackrest.PgBackRestSettings:
    """pgBackRest's repository: the backups bucket at the store's endpoint, this server's folder
    in it (as Barman Cloud's serverName on Kubernetes), retention from config."""
    endpoint = urlsplit(backup.endpoint)
    assert endpoint.hostname is not None
    return pgbackrest.PgBackRestSettings(
        s3_endpoint=endpoint.hostname,
        s3_port=endpoint.port or 443,
        s3_bucket=backup.bucket,
        s3_region=config.object_store.region,
        # The stack's CA signed the bundled store's certificate; an external one has a public CA.
        ca_file=CA_PATH if backup.ca_pem is not None else SYSTEM_CA_FILE,
        repo_path=f"/{backup.server_name}",
        retention_full_days=config.backup.retention_days,
    )


def backup_image(config: StackConfig, platform: Platform) -> pulumi.Input[str]:
    """The image with pgBackRest: as given, or built from images/postgres on images.postgres,
    tagged by a hash of both (a new base or Dockerfile is a new tag, so the container is replaced)."""
    if config.images.postgres_pgbackrest:
        return config.images.postgres_pgbackrest
    inputs = IMAGE_DOCKERFILE.read_bytes() + b"\0" + config.images.postgres.encode()
    version = f"pg-{hashlib.sha256(inputs).hexdigest()[:16]}"
    context = IMAGE_DOCKERFILE.parent
    return platform.build_image(
        "postgres", str(context), str(IMAGE_DOCKERFILE), None, version, {"POSTGRES_IMAGE": config.images.postgres}
    )


def _exporters(
    config: StackConfig,
    spec: ServiceSpec,
    certificate: Certificate,
    settings: pgbackrest.PgBackRestSettings | None,
) -> tuple[Exporter, ...]:
    """postgres_exporter with the server's password; with pgBackRest, its exporter with the
    repository's configuration and keys (the same variables, from the same secret env)."""
    if settings is None:
        return postgres_exporters(config, certificate.ca_pem, "POSTGRES_PASSWORD")
    conf = [f for f in spec.files if f.path == pgbackrest.CONFIG_PATH]
    keys = {pgbackrest.ENV_KEY: pgbackrest.ENV_KEY, pgbackrest.ENV_KEY_SECRET: pgbackrest.ENV_KEY_SECRET}
    return postgres_exporters(
        config, certificate.ca_pem, "POSTGRES_PASSWORD", pgbackrest_files=conf, pgbackrest_secret_keys=keys
    )


def _with_pgbackrest(
    spec: ServiceSpec,
    config: StackConfig,
    platform: Platform,
    settings: pgbackrest.PgBackRestSettings,
    backup: ClusterBackup,
    password: pulumi.Output[str],
) -> ServiceSpec:
    """The single-host database with WAL archiving (postgresql.conf's archive lines, already in
    the spec's files) and its backup scheduler beside it."""
    return dataclasses.replace(
        spec,
        image=backup_image(config, platform),
        # The scheduler reaches the server through its socket: a directory both containers mount.
        security=dataclasses.replace(spec.security, tmpfs=("/tmp",)),
        volumes=[*spec.volumes, Volume("run", settings.pg_socket_path, 1)],
        env={**spec.env, pgbackrest.ENV_CONFIG: pgbackrest.CONFIG_PATH},
        # archive-push daemonizes its asynchronous half: tini, not the postmaster, must adopt it.
        init=True,
        secret_env={
            **spec.secret_env,
            # The repository's keys for archive-push and the scheduler; the password for the
            # scheduler's connections (check, backup) through the socket.
            **secret_env(
                {
                    pgbackrest.ENV_KEY: backup.access_key,
                    pgbackrest.ENV_KEY_SECRET: backup.secret_key,
                    pgbackrest.ENV_PASSWORD: password,
                }
            ),
        },
        files=[
            *spec.files,
            ConfigFile(pgbackrest.CONFIG_PATH, pgbackrest.render(settings)),
            ConfigFile(pgbackrest.SCHEDULER_PATH, pgbackrest.scheduler_script(settings, config.backup.hour_utc)),
        ],
        companions=(
            Companion(
                name="backups",
                command=["bash", pgbackrest.SCHEDULER_PATH],
                # pgBackRest with process-max 2 and zstd; the data it reads is the volume's.
                resources=config.database.model_copy(update={"cpu_millis": 500, "memory_mb": 256}),
                # Healthy once archiving reached the repository (`pgbackrest check`); a first
                # deploy waits for that, so a repository it cannot use fails `pulumi up`. 240 s:
                # a first `check` may wait out archive-timeout (60 s) and be retried 10 s later.
                probe=Probe(command=["test", "-f", pgbackrest.HEALTHY_MARK], start_period_seconds=240),
                depends_on=backup.store_ready,
            ),
        ),
    )

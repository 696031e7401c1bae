"""PostgreSQL 16: TLS required, scram-sha-256 only, reachable from api/worker/migrations."""

from __future__ import annotations

import base64
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
from components.platforms.base import Placement, Platform
from components.secrets import StackSecrets
from components.service import CA_PATH, TLS_DIR, Service
from components.spec import (
    CONFIG_DIR,
    ClusterBackup,
    ClusterLogin,
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
USER = "aixsss"  # the owner of the data: no login, no superuser (the clients act as it)
# The image's bootstrap superuser (POSTGRES_USER): its OS user by peer through the socket, only.
SUPERUSER = "postgres"
PORT = 5432
UID = 999  # the image's postgres user
CLUSTER_UID = 26  # CloudNativePG's PostgreSQL images' postgres user
SOCKET_DIR = "/var/run/postgresql"
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
        bootstrap_password: pulumi.Output[str] | None = None,
        scram_salt: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        login_passwords: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None,
    ) -> None:
        super().__init__("Database", NAME, opts)
        self.backup = backup
        self._config = config
        # Clients log in as this generation's login role (rotation without lockout): on one host
        # the credentials job creates it (_credentials_job); CloudNativePG as a managed role
        # (cluster_logins), its sessions acting as the owner once _act_as_owner_job ran.
        single_host = not platform.runs_postgres_clusters
        self.login_role = postgres.login_role(USER, config.secrets.rotation)
        self._login_passwords = login_passwords or (password, password)
        self._ca_pem = certificate.ca_pem
        self._scram_salt = scram_salt
        # Where an operator runs PostgreSQL it archives and backs up (Barman Cloud); on a single
        # host pgBackRest does, from the image with pgBackRest, beside the server.
        self.pgbackrest = None if backup is None or platform.runs_postgres_clusters else _pgbackrest(config, backup)
        settings = postgres.PostgresSettings(
            cert_path=f"{TLS_DIR}/server.crt",
            key_path=f"{TLS_DIR}/server.key",
            hba_path="/etc/aixsss/pg_hba.conf",
            max_connections=config.database.max_connections,
            superuser=SUPERUSER,
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
            # pg_isready needs an answer, not a login: the owner's is a refusal (pg_hba.conf).
            probe=Probe(
                command=["pg_isready", "-h", "127.0.0.1", "-p", str(PORT), "-U", USER, "-d", DATABASE],
                start_period_seconds=30,
            ),
            args=["postgres", "-c", "config_file=/etc/aixsss/postgresql.conf"],
            env={
                "POSTGRES_DB": DATABASE,
                # The bootstrap superuser; the credentials job makes the owner (a plain role).
                "POSTGRES_USER": SUPERUSER if single_host else USER,
                "PGDATA": "/var/lib/postgresql/data/pgdata",
                "POSTGRES_INITDB_ARGS": "--auth-local=scram-sha-256 --auth-host=scram-sha-256",
            },
            # On one host the image's initdb gets the bootstrap password, which the first
            # credentials job removes: the server's container does not change with a rotation.
            secret_env=secret_env(
                {"POSTGRES_PASSWORD": bootstrap_password if single_host and bootstrap_password else password}
            ),
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
            # The official image: PGDATA and the socket directory owned by postgres (999), modes 1777/3777.
            volumes=[Volume("data", "/var/lib/postgresql/data", config.database.storage_gb, owned_by_image=True)],
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
        self._ready: list[pulumi.Resource] | None = None
        # The run-once jobs that make the login roles work (outputs list them): on one host psql
        # through the socket creates and retires them; under CloudNativePG the act-as-owner Job.
        self.credentials_jobs: list[Placement] = []
        if platform.runs_postgres_clusters:
            spec = dataclasses.replace(spec, cluster=self._cluster(config, password, certificate))
        else:
            spec = _on_one_host(spec, settings)
            if self.pgbackrest is not None and backup is not None:
                spec = _with_pgbackrest(spec, config, platform, self.pgbackrest, backup)
            if exporters_declared(config):
                spec = dataclasses.replace(
                    spec, exporters=_exporters(config, spec, certificate, self.pgbackrest, self.login_role, password)
                )
        self._place(platform, spec, [])
        if single_host:
            # Clients (the migrations first) start once this generation's role can log in.
            grant_sql = postgres.grant_login_sql(USER, self.login_role, DATABASE, SUPERUSER)
            grant = self._credentials_job("credentials", grant_sql, password)
            self.credentials_jobs.append(platform.place(grant, self, self.placement.ready))
            self._ready = self.credentials_jobs[-1].ready
        host = platform.dns_names(CLUSTER_SERVICES[0] if platform.runs_postgres_clusters else NAME)[0]
        if not single_host:
            # Clients (the migrations first) start once the new role's sessions act as the owner.
            job = platform.place(self._act_as_owner_job(host, password), self, self.placement.ready)
            self.credentials_jobs.append(job)
            self._ready = job.ready
        # Prisma's TLS dialect: sslcert is the CA that must have signed the server certificate.
        # connection_limit caps each process's pool so the stack fits max_connections (a config
        # rule checks the sum); Prisma percent-decodes the password, so any character is safe.
        query = (
            f"sslmode=require&sslaccept=strict&sslcert={CA_PATH}&connection_limit={config.database.connection_limit}"
        )
        self.url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{self.login_role}:",
                pulumi.Output.from_input(password).apply(url_quote),
                f"@{host}:{PORT}/{DATABASE}?{query}",
            )
        )

    @property
    def ready(self) -> list[pulumi.Resource]:
        """What clients wait for: on one host, the credentials job; under CloudNativePG, the
        act-as-owner Job (after the Cluster)."""
        return self._ready if self._ready is not None else self.placement.ready

    def retire_previous_logins(self, platform: Platform, clients_ready: list[pulumi.Resource]) -> None:
        """Once every client runs with this generation's role (``clients_ready``), the roles of
        generations before the previous one can no longer log in and are dropped. The previous
        generation stays for one rotation: api and worker are replaced side by side, so its
        clients still serve and drain until the end of this deploy (spec.Handover), as under
        CloudNativePG, whose Cluster's managed roles drop a role one rotation late
        (cluster_logins). One host only. Before the second rotation nothing is that old, and
        there is no job: the first deploy's critical path ends at the api (issue 14)."""
        rotation = self._config.secrets.rotation
        if platform.runs_postgres_clusters or rotation < 2:
            return
        kept = (self.login_role, postgres.login_role(USER, rotation - 1))
        retire = self._credentials_job("retire-logins", postgres.retire_logins_sql(USER, kept), None)
        self.credentials_jobs.append(platform.place(retire, self, [*self.ready, *clients_ready]))

    def _credentials_job(self, name: str, sql: str, password: pulumi.Output[str] | None) -> ServiceSpec:
        """A run-once psql of ``sql`` through the server's socket, as the superuser by peer
        authentication (pg_ident.conf): no network and no password; ``password`` reaches
        it as its SCRAM verifier only. A new login role or script is a new release (it runs
        again); a rotated password changes its environment, which replaces it too."""
        path = f"{CONFIG_DIR}/{name}.sql"
        verifier = {}
        if password is not None:
            assert self._scram_salt is not None, "one host: StackSecrets makes the verifier's salt"
            verifier = {
                postgres.LOGIN_VERIFIER_ENV: pulumi.Output.all(password, self._scram_salt).apply(
                    lambda args: postgres.scram_verifier(args[0], base64.b64decode(args[1]))
                )
            }
        image = self._config.images.postgres
        return ServiceSpec(
            name=f"{NAME}-{name}",
            image=image,
            resources=self._config.database.model_copy(update={"cpu_millis": 250, "memory_mb": 64}),
            security=Security(run_as_user=UID, run_as_group=UID),
            probe=None,
            command=[
                "psql",
                "--no-psqlrc",
                "--quiet",
                "-h",
                SOCKET_DIR,
                "-p",
                str(PORT),
                "-U",
                SUPERUSER,
                "-d",
                DATABASE,
                "-f",
                path,
            ],
            secret_env=secret_env(verifier),
            volumes=[Volume("run", SOCKET_DIR, 1, shared_from=NAME, holds_data=False)],
            files=[ConfigFile(path, sql)],
            zones=frozenset(),
            run_once=True,
            release=hashlib.sha256(f"{image}\n{sql}".encode()).hexdigest(),
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
            # certificate) and its catch-all `host all all all <password_encryption>`: the owner's
            # members (the login roles) over TLS only, never the owner itself, as on Docker.
            pg_hba=(
                f"hostssl all {USER} all reject",
                f"hostssl {DATABASE} +{USER} all scram-sha-256",
                "hostnossl all all all reject",
                "host all all all reject",
            ),
            storage_gb=db.storage_gb,
            backup=self.backup,
            restore=restore,
            logins=cluster_logins(config.secrets.rotation, self._login_passwords),
        )

    def _act_as_owner_job(self, host: str, password: pulumi.Output[str]) -> ServiceSpec:
        """CloudNativePG's managed roles cannot set a role's session defaults, so the new login
        role sets its own (postgres.act_as_owner_sql), over TLS with its password, before the
        migrations. It retries while the operator has not created the role yet, and fails
        unless a new session then acts as the owner (PostgreSQL accepts the statement even for
        a role that is no member; tests/test_cnpg_logins_servers.py)."""
        sql = postgres.act_as_owner_sql(USER)
        check = f"[ \"$(psql -X -A -t -c 'SELECT current_user')\" = {USER} ]"
        act = 'psql -X -q -v ON_ERROR_STOP=1 -c "$ACT_AS_OWNER"'
        # The password from its file (CKV_K8S_35: no secret in the environment of the pod spec).
        script = (
            'PGPASSWORD="$(cat "$PGPASSWORD_FILE")"; export PGPASSWORD; '
            f"for i in $(seq 60); do {act} && {check} && exit 0; sleep 5; done; exit 1"
        )
        image = self._config.images.postgres_cluster
        return ServiceSpec(
            name=f"{NAME}-act-as-owner",
            image=image,
            resources=self._config.database.model_copy(update={"cpu_millis": 100, "memory_mb": 64}),
            security=Security(run_as_user=CLUSTER_UID, run_as_group=CLUSTER_UID),
            probe=None,
            command=["sh", "-c", script],
            env={
                "PGHOST": host,
                "PGPORT": str(PORT),
                "PGDATABASE": DATABASE,
                "PGUSER": self.login_role,
                "PGSSLMODE": "verify-full",
                "PGSSLROOTCERT": CA_PATH,
                "PGCONNECT_TIMEOUT": "5",
                "ACT_AS_OWNER": sql,
            },
            secret_env=secret_env({"PGPASSWORD": password}),
            file_env=frozenset({"PGPASSWORD"}),
            files=[ConfigFile(CA_PATH, self._ca_pem)],
            talks_to=(NAME,),
            zones=frozenset(),
            run_once=True,
            release=hashlib.sha256(f"{image}\n{self.login_role}\n{sql}".encode()).hexdigest(),
        )


def cluster_logins(rotation: int, passwords: tuple[pulumi.Output[str], pulumi.Output[str]]) -> tuple[ClusterLogin, ...]:
    """The login roles of a CloudNativePG cluster at ``rotation``: each password slot's generation
    (StackSecrets.redis_slot_generations: the current one and the previous one, whose running
    clients keep logging in until they roll), the one before disabled, older ones absent. One resource, one
    `pulumi up`: the previous generation goes at the next rotation, long after its clients
    rolled, so nothing has to run after the roll (its password stays valid until then)."""
    slots = StackSecrets.redis_slot_generations(rotation)
    present = sorted(((g, passwords[k]) for k, g in enumerate(slots) if g >= 0), key=lambda p: -p[0])
    logins = [ClusterLogin(postgres.login_role(USER, g), p) for g, p in present]
    # The generation before last is disabled first: should its DROP ROLE fail later (a grant or
    # object someone gave it by hand), it is left without login or password, not with its old
    # one. Every older generation stays listed as absent, not only one: a role no longer listed
    # is left alone by CloudNativePG, and a jump in secrets.rotation (3 to 5) skips one. An entry
    # for a role already gone does nothing; the list is bounded by config.MAX_ROTATION.
    for retired in range(rotation - 2, -1, -1):
        logins.append(ClusterLogin(postgres.login_role(USER, retired), None, dropped=retired < rotation - 2))
    return tuple(logins)


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
        pg_user=SUPERUSER,
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
    login_role: str,
    password: pulumi.Output[str],
) -> tuple[Exporter, ...]:
    """postgres_exporter as the clients' login role; with pgBackRest, its exporter with the
    repository's configuration and keys (the same variables, from the same secret env)."""
    if settings is None:
        return postgres_exporters(config, certificate.ca_pem, login_role, password)
    conf = [f for f in spec.files if f.path == pgbackrest.CONFIG_PATH]
    keys = {pgbackrest.ENV_KEY: pgbackrest.ENV_KEY, pgbackrest.ENV_KEY_SECRET: pgbackrest.ENV_KEY_SECRET}
    return postgres_exporters(
        config, certificate.ca_pem, login_role, password, pgbackrest_files=conf, pgbackrest_secret_keys=keys
    )


def _on_one_host(spec: ServiceSpec, settings: postgres.PostgresSettings) -> ServiceSpec:
    """The single-host server: its socket directory on a volume the credentials jobs (and
    pgBackRest's scheduler) share, and pg_ident.conf, which lets its OS user in as the superuser."""
    return dataclasses.replace(
        spec,
        security=dataclasses.replace(spec.security, tmpfs=("/tmp",)),
        volumes=[*spec.volumes, Volume("run", SOCKET_DIR, 1, holds_data=False, owned_by_image=True)],
        files=[*spec.files, ConfigFile(settings.ident_path, postgres.render_ident(settings))],
    )


def _with_pgbackrest(
    spec: ServiceSpec,
    config: StackConfig,
    platform: Platform,
    settings: pgbackrest.PgBackRestSettings,
    backup: ClusterBackup,
) -> ServiceSpec:
    """The single-host database with WAL archiving (postgresql.conf's archive lines, already in
    the spec's files) and its backup scheduler beside it."""
    return dataclasses.replace(
        spec,
        image=backup_image(config, platform),
        # The scheduler reaches the server through its socket (the shared volume, _on_one_host),
        # as the superuser by peer authentication (pgbackrest.conf's pg1-user): no password.
        env={**spec.env, pgbackrest.ENV_CONFIG: pgbackrest.CONFIG_PATH},
        # archive-push daemonizes its asynchronous half: tini, not the postmaster, must adopt it.
        init=True,
        secret_env={
            **spec.secret_env,
            # The repository's keys for archive-push and the scheduler.
            **secret_env({pgbackrest.ENV_KEY: backup.access_key, pgbackrest.ENV_KEY_SECRET: backup.secret_key}),
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

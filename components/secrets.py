"""Generated secrets (pulumi-random), or the ones a user supplied with `config set --secret`."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_random as random

from components.config import StackConfig, Target, supplied_secret


def fingerprint(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A SHA-256 fingerprint an auditor can compare; safe to show, so it is unwrapped."""
    digest = pulumi.Output.from_input(value).apply(lambda v: "sha256:" + hashlib.sha256(v.encode()).hexdigest())
    return pulumi.Output.unsecret(digest)


class StackSecrets(pulumi.ComponentResource):
    """Every secret the stack needs; each attribute is a secret Output."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aixsss:secrets:StackSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Changing `rotation` replaces every rotatable secret in one `pulumi up`.
        rotating = {"rotation": str(config.secrets.rotation)}

        def password(key: str, length: int, *, upper_only: bool = False) -> pulumi.Output[str]:
            supplied = supplied_secret(key)
            if supplied is not None:
                return pulumi.Output.secret(supplied)
            generated = random.RandomPassword(
                key,
                length=length,
                # URL-safe alphabet: the values go into DATABASE_URL/REDIS_URL unescaped.
                special=False,
                lower=not upper_only,
                keepers=rotating,
                opts=child,
            )
            return generated.result

        rotation = config.secrets.rotation
        if config.target is Target.KUBERNETES and supplied_secret("postgresPassword") is None:
            # Two slots, as Redis's: CloudNativePG keeps the previous generation's login role
            # (aixsss_g<N-1>) with its password while the clients roll, and drops it at the next
            # rotation (components/database.py, cluster_logins).
            self.postgres_login_passwords = self._slots("postgresPassword", rotation, child)
            self.postgres_password = self.postgres_login_passwords[rotation % 2]
        else:
            self.postgres_password = password("postgresPassword", 32)
            # One host keeps earlier generations' verifiers in the server itself; a supplied
            # password is one value in both slots (no overlap; README).
            self.postgres_login_passwords = (self.postgres_password, self.postgres_password)
        # The owner's password for the image's initdb (Docker), never rotated: the first
        # credentials job removes it (login roles, components/database.py), so it opens nothing
        # afterwards, and the server's container never changes with secrets.rotation.
        self.postgres_bootstrap_password: pulumi.Output[str] | None = None
        # The salt of the login role's SCRAM verifier (base64): random, new with each rotation,
        # kept in state so an unchanged password gives the credentials job an unchanged verifier.
        self.postgres_scram_salt: pulumi.Output[str] | None = None
        if config.target is Target.DOCKER:
            self.postgres_bootstrap_password = pulumi.Output.secret(
                random.RandomPassword("postgresBootstrapPassword", length=32, special=False, opts=child).result
            )
            salt = random.RandomBytes("postgresScramSalt", length=16, keepers=rotating, opts=child)
            self.postgres_scram_salt = pulumi.Output.secret(salt.base64)
        self.redis_passwords = self._redis_slots(config.secrets.rotation, child)
        # The clients' password (REDIS_URL, the tunnels' users, the exporter, HAProxy's check,
        # Sentinel's auth-pass): the slot of the current generation. Every Redis server accepts
        # both slots, so a rotation never refuses the clients that still hold the other one.
        self.redis_password = self.redis_passwords[config.secrets.rotation % 2]
        # The slot the previous generation's clients hold (the one the next rotation overwrites).
        self.redis_previous_password = self.redis_passwords[(config.secrets.rotation + 1) % 2]
        # Sentinel's own password (cache.highAvailability): only the Redis nodes and Sentinels use
        # it, never the application, so it is always generated, never supplied.
        # Two slots as well, for the same reason: the nodes, which roll first, ask the Sentinels
        # with the previous generation's (accepted by old and new Sentinels alike).
        self.redis_sentinel_password: pulumi.Output[str] | None = None
        self.redis_sentinel_passwords: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None
        self.redis_sentinel_previous_password: pulumi.Output[str] | None = None
        if config.cache.high_availability:
            self.redis_sentinel_passwords = self._slots("redisSentinelPassword", config.secrets.rotation, child)
            self.redis_sentinel_password = self.redis_sentinel_passwords[config.secrets.rotation % 2]
            self.redis_sentinel_previous_password = self.redis_sentinel_passwords[(config.secrets.rotation + 1) % 2]
        bundled = config.object_store.mode == "bundled"
        # An external S3 service's admin credentials are never the stack's business.
        self.minio_root_user = password("minioRootUser", 16) if bundled else None
        self.minio_root_password = password("minioRootPassword", 40) if bundled else None
        self.minio_app_access_key = password("minioAppAccessKey", 20, upper_only=True)
        self.minio_app_secret_key = password("minioAppSecretKey", 40)
        # The backups' own S3 user: the app's keys cannot reach the backups bucket.
        self.backup_access_key = password("backupAccessKey", 20, upper_only=True)
        self.backup_secret_key = password("backupSecretKey", 40)
        self.jwt_secret = password("jwtSecret", 64)
        self.api_key_encryption_key = self._encryption_key(config)

        self.inventory: dict[str, pulumi.Output[str]] = {
            "POSTGRES_PASSWORD": self.postgres_password,
            **(
                {"POSTGRES_BOOTSTRAP_PASSWORD": self.postgres_bootstrap_password}
                if self.postgres_bootstrap_password is not None
                else {}
            ),
            "REDIS_PASSWORD": self.redis_password,
            **(
                {"REDIS_SENTINEL_PASSWORD": self.redis_sentinel_password}
                if self.redis_sentinel_password is not None
                else {}
            ),
            **(
                {"MINIO_ROOT_USER": self.minio_root_user, "MINIO_ROOT_PASSWORD": self.minio_root_password}
                if self.minio_root_user is not None and self.minio_root_password is not None
                else {}
            ),
            "S3_ACCESS_KEY_ID": self.minio_app_access_key,
            "S3_SECRET_ACCESS_KEY": self.minio_app_secret_key,
            "BACKUP_S3_ACCESS_KEY_ID": self.backup_access_key,
            "BACKUP_S3_SECRET_ACCESS_KEY": self.backup_secret_key,
            "JWT_SECRET": self.jwt_secret,
            "API_KEY_ENCRYPTION_KEY": self.api_key_encryption_key,
        }
        self.register_outputs({"fingerprints": {k: fingerprint(v) for k, v in self.inventory.items()}})

    @staticmethod
    def redis_slot_generations(rotation: int) -> tuple[int, int]:
        """The generation each Redis password slot was last generated for: slot k holds the
        newest generation g <= rotation with g % 2 == k (-1: slot 1 before the first rotation).
        So a rotation regenerates exactly one slot, and the other keeps the previous
        generation's password. Slot 0's keeper at an even rotation is exactly the single
        password's old keeper, so a stack upgraded at an even rotation keeps its password."""
        return 2 * (rotation // 2), 2 * ((rotation + 1) // 2) - 1

    def _redis_slots(
        self, rotation: int, child: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        supplied = supplied_secret("redisPassword")
        if supplied is not None:
            # A supplied password is one value: both slots hold it (no overlap; README).
            value = pulumi.Output.secret(supplied)
            return value, value
        return self._slots("redisPassword", rotation, child)

    def _slots(
        self, name: str, rotation: int, child: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        slots = []
        for slot, generation in enumerate(self.redis_slot_generations(rotation)):
            generated = random.RandomPassword(
                # Slot 0 keeps the single password's resource name: an existing stack's state.
                name if slot == 0 else f"{name}Slot{slot}",
                length=32,
                special=False,  # URL-safe: REDIS_URL carries it unescaped
                keepers={"rotation": str(generation)},
                opts=child,
            )
            slots.append(pulumi.Output.secret(generated.result))
        return slots[0], slots[1]

    def _encryption_key(self, config: StackConfig) -> pulumi.Output[str]:
        supplied = supplied_secret("apiKeyEncryptionKey")
        if supplied is not None:
            return pulumi.Output.secret(supplied)
        # No keepers: this key encrypts users' stored provider keys, so it is never regenerated,
        # and `protect` keeps `pulumi destroy` from losing it in every environment.
        key = random.RandomBytes(
            "apiKeyEncryptionKey",
            length=32,
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=config.protect_data),
        )
        return key.base64

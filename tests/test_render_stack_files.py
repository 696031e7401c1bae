"""`make render` with real stack files: `secure:` values, the passphrase, stand-ins, any stack name.

Stack files are written into a temporary project directory (a copy of Pulumi.yaml), never into
the repository, and encrypted here with a test-only encrypter that follows Pulumi's Go code.
Known-answer vectors (one produced by Pulumi's own Go code) keep that encrypter and the
decrypter under test from agreeing on a shared mistake.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from rendering import config_file

from offline import passphrase as crypto
from offline.engine import ROOT
from offline.redact import REDACTED
from offline.render import SECRET_MODE, Rendered, render
from offline.stack_file import config_string, load_yaml

PASSPHRASE = "correct horse battery staple"
JWT = "jwt-" + "j" * 60
REDIS_PASSWORD = "RedisPassw0rdFromTheStackFile0000"
DOMAIN = "qa.aixsss.example.com"
# A staging stack on the Docker target (pinned images, as staging requires), named `qa`.
QA = {
    "aixsss:environment": "staging",
    "aixsss:target": "docker",
    "aixsss:domain": DOMAIN,
    "aixsss:images.api": "ghcr.io/aixsss/api:1.4.0",
    "aixsss:images.worker": "ghcr.io/aixsss/worker:1.4.0",
    "aixsss:images.web": "ghcr.io/aixsss/web:1.4.0",
    "aixsss:images.postgres": "postgres:16.10",
    "aixsss:images.redis": "redis:7.4.5",
}
NOT_DECRYPTED = "secure value not decrypted (set PULUMI_CONFIG_PASSPHRASE to render the real one)"

# pkg/secrets/passphrase/manager_test.go (pulumi/pulumi): Go's NewPassphraseSecretsManager wrote
# this state for the passphrase "password"; "password123" is that test's incorrect passphrase.
PULUMI_STATE = "v1:fozI5u6B030=:v1:F+6ZduKKd8G0/V7L:PGMFeIzwobWRKmEAzUdaQHqC5mMRIQ=="
# PBKDF2-HMAC-SHA256("password", base64 "fozI5u6B030=", 1,000,000, 32), computed once by hashlib.
PULUMI_STATE_KEY = "7e700703e28b164e816cb939612c938b8dcf8f8a5237d02824cea3fb656b3a8b"


# --- a test-only encrypter, after sdk/go/common/resource/config/crypt.go and manager.go -------


def encrypt(key: bytes, plaintext: str) -> str:
    """symmetricCrypter.EncryptValue: a fresh 12-byte nonce, AES-256-GCM, `v1:<nonce>:<ct>`."""
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), None)
    return f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"


def new_state(phrase: str) -> tuple[str, bytes]:
    """NewPassphraseSecretsManager: an 8-byte salt and "pulumi" encrypted under the derived key."""
    salt = os.urandom(8)
    key = hashlib.pbkdf2_hmac("sha256", phrase.encode(), salt, 1_000_000, 32)
    return f"v1:{base64.b64encode(salt).decode()}:{encrypt(key, 'pulumi')}", key


@pytest.fixture(scope="module")
def state() -> tuple[str, bytes]:
    return new_state(PASSPHRASE)


class Project:
    """A project directory of its own: Pulumi.yaml copied, stack files written by the test."""

    def __init__(self, root: Path, state: tuple[str, bytes]) -> None:
        self.root = root
        self.salt, self.key = state
        shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")

    def secure(self, plaintext: str) -> dict[str, str]:
        return {"secure": encrypt(self.key, plaintext)}

    def stack(self, name: str, config: dict[str, Any], *, encrypted: bool = True) -> Path:
        document: dict[str, Any] = {"config": config}
        if encrypted:
            document["encryptionsalt"] = self.salt
        path = self.root / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def render(self, stack: str, *, phrase: str | None = None, show_secrets: bool = False) -> Rendered:
        out = self.root / ("shown" if show_secrets else "build") / (phrase or "none")
        return render(stack, None, out, show_secrets, project_dir=self.root, passphrase=phrase)


@pytest.fixture
def project(tmp_path: Path, state: tuple[str, bytes]) -> Project:
    return Project(tmp_path, state)


def cli(
    project: Project, stack: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG_PASSPHRASE")}
    args = ["--stack", stack, "--out", str(project.root / "cli"), "--project-dir", str(project.root), *extra]
    return subprocess.run(
        [sys.executable, "-m", "offline.render", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def all_text(result: Rendered) -> str:
    return "\n".join(p.read_text() for p in result.out.rglob("*") if p.is_file())


def clean_error(done: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed the way a user should see it: exit 2, `error: …`, no traceback."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    return done.stderr


# --- the crypto, against fixed vectors ---------------------------------------------------------


def test_pulumi_go_state_opens_with_its_passphrase_only() -> None:
    decrypter = crypto.Decrypter.from_state("password", PULUMI_STATE)
    assert decrypter.key.hex() == PULUMI_STATE_KEY
    with pytest.raises(crypto.IncorrectPassphrase):
        crypto.Decrypter.from_state("password123", PULUMI_STATE)


def test_key_derivation_and_decryption_match_independent_primitives() -> None:
    salt = base64.b64decode("fozI5u6B030=")
    assert crypto.derive_key("password", salt).hex() == PULUMI_STATE_KEY
    key = bytes.fromhex(PULUMI_STATE_KEY)
    nonce = bytes(range(12))
    sealed = AESGCM(key).encrypt(nonce, "s3cret ✓".encode(), None)
    value = f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(sealed).decode()}"
    assert crypto.decrypt_value(key, value) == "s3cret ✓"
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    bad_values = [
        f"v1:{base64.b64encode(nonce).decode()}:{base64.b64encode(tampered).decode()}",
        value.replace("v1:", "v2:", 1),
        f"v1:{base64.b64encode(nonce[:8]).decode()}:{base64.b64encode(sealed).decode()}",
        value + ":extra",
    ]
    for bad in bad_values:
        with pytest.raises(crypto.SecretsError):
            crypto.decrypt_value(key, bad)
    with pytest.raises(crypto.SecretsError):
        crypto.decrypt_value(crypto.derive_key("Password", salt), value)


def test_passphrase_comes_from_the_environment_as_pulumi_reads_it(tmp_path: Path) -> None:
    phrase_file = tmp_path / "phrase"
    phrase_file.write_text("  from the file \n")
    assert crypto.passphrase_from_env({}) is None
    assert crypto.passphrase_from_env({"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase_file)}) == "from the file"
    # Set at all, even empty, the variable wins over the file (readPassphrase uses LookupEnv).
    both = {"PULUMI_CONFIG_PASSPHRASE": "", "PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase_file)}
    assert crypto.passphrase_from_env(both) == ""
    assert crypto.passphrase_from_env({"PULUMI_CONFIG_PASSPHRASE_FILE": ""}) is None
    with pytest.raises(crypto.SecretsError, match="unable to read PULUMI_CONFIG_PASSPHRASE_FILE"):
        crypto.passphrase_from_env({"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "missing")})


def test_values_reach_the_program_as_the_cli_passes_them() -> None:
    document = load_yaml(
        "a: 3\nb: '3'\nc: true\nd: yes\ne: 2025-01-01\nf: 12:30\ng: [1, {z: 1, a: 2.0}]\nh: 1e3\ni: 0x10\n"
    )
    passed = {k: config_string(v) for k, v in document.items()}
    assert passed == {
        "a": "3",
        "b": "3",
        "c": "true",
        "d": "yes",  # YAML 1.2 (the CLI's yaml.v3): not a boolean
        "e": "2025-01-01",  # not a date
        "f": "12:30",  # not the sexagesimal int 750
        "g": '[1,{"a":2,"z":1}]',  # Go's json.Marshal: compact, keys sorted, whole floats bare
        "h": "1000",
        "i": "16",
    }


# --- rendering stack files ---------------------------------------------------------------------


def test_secure_values_are_secret_config_redacted_unless_shown(project: Project) -> None:
    project.stack(
        "qa",
        {
            **QA,
            "aixsss:secrets.jwtSecret": project.secure(JWT),
            "aixsss:secrets.redisPassword": project.secure(REDIS_PASSWORD),
        },
    )
    hidden = project.render("qa", phrase=PASSPHRASE)
    assert {"aixsss:secrets.jwtSecret", "aixsss:secrets.redisPassword"} <= set(hidden.deployment.secret_keys)
    assert hidden.deployment.config["aixsss:secrets.jwtSecret"] == JWT
    text = all_text(hidden)
    assert JWT not in text and REDIS_PASSWORD not in text
    redis_conf = config_file(hidden, "aixsss-staging-redis", "redis.conf")
    # The supplied password is one value, so both slots are it: one hash, itself redacted.
    assert f"user default on resetpass #{REDACTED} ~* &* +@all\n" in redis_conf.read_text()
    assert redis_conf.stat().st_mode & 0o777 == SECRET_MODE
    assert f"JWT_SECRET={REDACTED}" in (hidden.out / "docker/plan.yaml").read_text()
    assert not [w for w in hidden.warnings if "secure value" in w]

    shown = project.render("qa", phrase=PASSPHRASE, show_secrets=True)
    digest = hashlib.sha256(REDIS_PASSWORD.encode()).hexdigest()
    assert f" #{digest} " in config_file(shown, "aixsss-staging-redis", "redis.conf").read_text()
    assert f"JWT_SECRET={JWT}" in (shown.out / "docker/plan.yaml").read_text()


def test_without_the_passphrase_stand_ins_of_the_right_shape_are_rendered_and_listed(project: Project) -> None:
    # Every key a user may supply (the certificate pair has a test of its own).
    secret_keys = [
        "secrets.jwtSecret",
        "secrets.apiKeyEncryptionKey",
        "secrets.postgresPassword",
        "secrets.redisPassword",
        "secrets.minioRootUser",
        "secrets.minioRootPassword",
        "secrets.minioAppAccessKey",
        "secrets.minioAppSecretKey",
    ]
    plaintexts = {key: f"the-real-{key}-value-{'x' * 32}" for key in secret_keys}
    project.stack("qa", {**QA, **{f"aixsss:{k}": project.secure(v) for k, v in plaintexts.items()}})
    shown = project.render("qa", show_secrets=True)
    config = shown.deployment.config
    for key, real in plaintexts.items():
        assert f"aixsss:{key}: {NOT_DECRYPTED}" in shown.warnings
        assert f"aixsss:{key}" in shown.deployment.secret_keys
        assert config[f"aixsss:{key}"] != real and real not in all_text(shown)
    assert len(config["aixsss:secrets.jwtSecret"]) >= 32
    assert len(base64.b64decode(config["aixsss:secrets.apiKeyEncryptionKey"], validate=True)) == 32
    for key in ("postgresPassword", "redisPassword", "minioRootPassword", "minioAppSecretKey"):
        assert re.fullmatch(r"[A-Za-z0-9]{32}", config[f"aixsss:secrets.{key}"])
    stand_in = config["aixsss:secrets.redisPassword"]
    digest = hashlib.sha256(stand_in.encode()).hexdigest()
    assert f" #{digest} " in config_file(shown, "aixsss-staging-redis", "redis.conf").read_text()
    assert f"  - aixsss:secrets.jwtSecret: {NOT_DECRYPTED}" in (shown.out / "summary.txt").read_text()


def test_secrets_of_another_provider_are_stand_ins_even_with_a_passphrase(project: Project) -> None:
    # A KMS- or service-encrypted stack has no encryptionsalt: the passphrase cannot open it.
    path = project.stack(
        "qa", {**QA, "aixsss:secrets.jwtSecret": {"secure": "AQICAHh0a21zLWNpcGhlcnRleHQ="}}, encrypted=False
    )
    path.write_text(path.read_text() + "secretsprovider: awskms://alias/aixsss\nencryptedkey: AQICAHh0\n")
    result = project.render("qa", phrase=PASSPHRASE)
    [warning] = [w for w in result.warnings if "secure value" in w]
    assert warning.startswith("aixsss:secrets.jwtSecret: secure value not decrypted (its secrets provider is awskms://")
    assert len(result.deployment.config["aixsss:secrets.jwtSecret"]) >= 32


def test_supplied_certificate_is_what_the_edge_serves(project: Project) -> None:
    cert_pem, key_pem = _certificate(DOMAIN)
    project.stack(
        "qa",
        {
            **QA,
            "aixsss:tls.publicCertificate": "supplied",
            "aixsss:tls.suppliedCertificatePem": project.secure(cert_pem),
            "aixsss:tls.suppliedPrivateKeyPem": project.secure(key_pem),
        },
    )
    shown = project.render("qa", phrase=PASSPHRASE, show_secrets=True)
    assert config_file(shown, "aixsss-staging-edge", "tls.crt").read_text() == cert_pem
    assert config_file(shown, "aixsss-staging-edge", "tls.key").read_text() == key_pem
    hidden = project.render("qa", phrase=PASSPHRASE)
    assert config_file(hidden, "aixsss-staging-edge", "tls.key").read_text() == REDACTED
    assert key_pem not in all_text(hidden)

    # Without the passphrase: a stand-in pair, a real certificate for the domain matching its key.
    stand_in = project.render("qa", show_secrets=True)
    served = config_file(stand_in, "aixsss-staging-edge", "tls.crt").read_text()
    assert served != cert_pem
    cert = x509.load_pem_x509_certificate(served.encode())
    key = serialization.load_pem_private_key(config_file(stand_in, "aixsss-staging-edge", "tls.key").read_bytes(), None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [DOMAIN]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) <= lifetime <= dt.timedelta(days=366)
    assert f"aixsss:tls.suppliedCertificatePem: {NOT_DECRYPTED}" in stand_in.warnings
    assert f"aixsss:tls.suppliedPrivateKeyPem: {NOT_DECRYPTED}" in stand_in.warnings


def test_stand_ins_are_kept_from_render_to_render_while_their_ciphertext_is_unchanged(project: Project) -> None:
    cert_pem, key_pem = _certificate(DOMAIN)
    config = {
        **QA,
        "aixsss:secrets.jwtSecret": project.secure(JWT),
        "aixsss:secrets.redisPassword": project.secure(REDIS_PASSWORD),
        "aixsss:tls.publicCertificate": "supplied",
        "aixsss:tls.suppliedCertificatePem": project.secure(cert_pem),
        "aixsss:tls.suppliedPrivateKeyPem": project.secure(key_pem),
    }
    project.stack("qa", config)

    def rendered() -> tuple[dict[str, str], dict[str, bytes]]:
        result = project.render("qa", show_secrets=True)
        assert len(result.deployment.stand_ins) == 4
        used = {k: result.deployment.config[k] for k in result.deployment.stand_ins}
        return used, {str(p.relative_to(result.out)): p.read_bytes() for p in result.out.rglob("*") if p.is_file()}

    first, files = rendered()
    assert rendered() == (first, files)
    # `config set --secret` again writes a new ciphertext: that key gets a new stand-in.
    config["aixsss:secrets.jwtSecret"] = project.secure(JWT)
    project.stack("qa", config)
    again, _ = rendered()
    assert {k for k in first if again[k] != first[k]} == {"aixsss:secrets.jwtSecret"}
    # A certificate and its key are one pair: a new certificate, a new key with it.
    config["aixsss:tls.suppliedCertificatePem"] = project.secure(cert_pem)
    project.stack("qa", config)
    renewed, _ = rendered()
    assert {k for k in first if renewed[k] != again[k]} == {
        "aixsss:tls.suppliedCertificatePem",
        "aixsss:tls.suppliedPrivateKeyPem",
    }


def test_any_stack_with_a_file_renders_with_its_own_environment(project: Project) -> None:
    project.stack("qa", {**QA, "aixsss:api.replicas": "3"}, encrypted=False)
    qa = project.render("qa")
    assert qa.out.name == "qa" and (qa.out / "docker/plan.yaml").is_file()
    # staging rules, not dev's: data is protected.
    assert any(r.protect for r in qa.deployment.registrations)
    assert len(qa.deployment.of_type("docker:index/container:Container")) == len(
        [r for r in qa.deployment.of_type("docker:index/container:Container") if "staging" in r.plain["name"]]
    )
    # `pulumi config set aixsss:api.replicas 3` writes the string "3"; a hand-written 3 is the same.
    api = [
        r
        for r in qa.deployment.of_type("docker:index/container:Container")
        if re.fullmatch(r"aixsss-staging-api-\d\.[0-9a-f]{8}", r.plain["name"])
    ]
    assert len(api) == 3
    project.stack("qa", {**QA, "aixsss:api.replicas": 3}, encrypted=False)
    assert project.render("qa").deployment.config["aixsss:api.replicas"] == "3"


def test_a_stack_named_outside_dev_staging_prod_needs_its_environment(project: Project) -> None:
    project.stack("qa", {k: v for k, v in QA.items() if k != "aixsss:environment"}, encrypted=False)
    with pytest.raises(pulumi.RunError) as refused:
        project.render("qa")
    assert "Pulumi.qa.yaml: aixsss:environment" in str(refused.value)
    # The CLI prints the program's whole message, and nothing else.
    assert clean_error(cli(project, "qa")) == f"error: {refused.value}\n"
    assert not (project.root / "cli/qa").exists()


def test_bad_config_is_the_program_message_without_a_traceback(project: Project) -> None:
    project.stack("qa", {**QA, "aixsss:api.replicas": "0", "aixsss:worker.replicas": "three"})
    stderr = clean_error(cli(project, "qa", env={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}))
    assert "Pulumi.qa.yaml: aixsss:api.replicas = 0" in stderr and "aixsss:worker.replicas" in stderr
    with pytest.raises(pulumi.RunError) as refused:
        project.render("qa", phrase=PASSPHRASE)
    assert stderr == f"error: {refused.value}\n"
    # The good file renders through the same command.
    project.stack("qa", QA)
    ok = cli(project, "qa", env={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE})
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and "Traceback" not in ok.stderr and "error:" not in ok.stderr


def test_wrong_passphrase_is_one_line_and_exit_2(project: Project, tmp_path: Path) -> None:
    project.stack("qa", {**QA, "aixsss:secrets.jwtSecret": project.secure(JWT)})
    stderr = clean_error(cli(project, "qa", env={"PULUMI_CONFIG_PASSPHRASE": "not the passphrase"}))
    assert stderr.count("\n") == 1 and "incorrect passphrase" in stderr and "Pulumi.qa.yaml" in stderr
    assert not (project.root / "cli/qa").exists()
    # The right one, from a file as PULUMI_CONFIG_PASSPHRASE_FILE gives it, decrypts.
    phrase_file = tmp_path / "phrase"
    phrase_file.write_text(PASSPHRASE + "\n")
    ok = cli(project, "qa", "--show-secrets", env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase_file)})
    assert ok.returncode == 0, ok.stderr
    assert f"JWT_SECRET={JWT}" in (project.root / "cli/qa/docker/plan.yaml").read_text()
    assert "secure value not decrypted" not in ok.stdout


def test_missing_stack_file_is_a_clean_error(project: Project) -> None:
    stderr = clean_error(cli(project, "missing"))
    assert stderr.count("\n") == 1 and "no stack 'missing'" in stderr and "Pulumi.missing.yaml" in stderr
    stderr = clean_error(cli(project, "../escape"))
    assert "is not a stack name" in stderr
    # A stack that has its file renders from the same project directory.
    project.stack("here", QA, encrypted=False)
    assert cli(project, "here").returncode == 0


def test_plain_value_for_a_secret_key_is_refused(project: Project) -> None:
    project.stack("qa", {**QA, "aixsss:secrets.jwtSecret": JWT})
    with pytest.raises(pulumi.RunError, match=r"pulumi config set --secret aixsss:secrets\.jwtSecret") as refused:
        project.render("qa", phrase=PASSPHRASE)
    assert JWT not in str(refused.value)  # the refusal does not echo the exposed value
    project.stack("qa", {**QA, "aixsss:secrets.jwtSecret": project.secure(JWT)})
    assert project.render("qa", phrase=PASSPHRASE).deployment.config["aixsss:secrets.jwtSecret"] == JWT


def _certificate(domain: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def test_every_suppliable_secret_has_a_stand_in() -> None:
    from components.config import SUPPLIED_SECRET_KEYS
    from offline import stack_file

    covered = {*stack_file._STAND_INS, stack_file.CERTIFICATE_KEY, stack_file.PRIVATE_KEY_KEY}
    assert covered == set(SUPPLIED_SECRET_KEYS.values())


def test_other_namespaces_reach_the_program_and_a_bare_key_is_refused(project: Project) -> None:
    env = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    project.stack("qa", {**QA, "aixss:api.replicas": "3", "kubernetes:context": "kind"})
    stderr = clean_error(cli(project, "qa", env=env))
    assert "aixss:api.replicas = '3' is not allowed: no such namespace (did you mean aixsss:api.replicas?)" in stderr
    assert "kubernetes:context" not in stderr
    project.stack("qa", {**QA, "api.replicas": "3"})
    assert "config keys without a namespace: api.replicas" in clean_error(cli(project, "qa", env=env))
    # The control: another provider's namespace alone renders.
    project.stack("qa", {**QA, "kubernetes:context": "kind"})
    assert cli(project, "qa", env=env).returncode == 0

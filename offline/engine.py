"""Run the real __main__.py under Pulumi mocks that behave like the engine where it matters.

Used by `make render` and by the tests.

- ``additional_secret_outputs`` are honoured: the engine marks e.g. RandomPassword.result secret;
  Pulumi's MockMonitor does not, which would make every secret-leak test pass vacuously.
- Every registration is recorded with its options (parent, protect, dependencies) and its
  inputs with secret markers intact, and the stack's outputs are captured likewise.
- Config comes from Pulumi.yaml's declared defaults plus the stack file, as the CLI merges them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import runpy
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.stack import run_in_stack, wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from offline import stack_file, values
from offline.stack_file import integral

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "aixsss"
STACKS = ("dev", "staging", "prod")
SECRET_KEY = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The plain value, with every secret marker removed (for asserting on content)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def plain_strings(value: Any) -> list[str]:
    """Every string reachable without passing through a secret marker."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def _secret(value: Any) -> dict[str, Any]:
    return {SECRET_KEY: SECRET_SIG, "value": value}


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    # The resource option as the program set it; None: not set, the provider's diff decides.
    delete_before_replace: bool | None
    dependencies: list[str]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    id: str = ""

    @property
    def plain(self) -> dict[str, Any]:
        return reveal(self.inputs)


# Inputs the provider updates in place; any other changed input replaces the resource, and a
# replacement is generated anew (keys, passwords, certificates). terraform-provider-tls: only
# early_renewal_hours lacks RequiresReplace on its certificates; every pulumi-random input and
# every other pulumi-tls input forces a replacement.
UPDATED_IN_PLACE = {
    "tls:index/selfSignedCert:SelfSignedCert": {"earlyRenewalHours"},
    "tls:index/locallySignedCert:LocallySignedCert": {"earlyRenewalHours"},
}


def kept_outputs(before: Registration, typ: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The outputs a resource keeps from ``before`` (the prior state) with these inputs, or None
    when the engine would replace it: a changed input that forces a replacement, or a
    certificate within its early-renewal window (pulumi-tls's ready_for_renewal)."""
    if before.type != typ or not before.id:
        return None
    changed = {k for k in before.inputs.keys() | inputs.keys() if before.inputs.get(k) != inputs.get(k)}
    if not changed <= UPDATED_IN_PLACE.get(typ, set()) or values.ready_for_renewal(before.outputs, inputs):
        return None
    return {**before.outputs, **inputs}


class EngineLikeMocks(mocks.Mocks):
    """Computed outputs for the providers the program uses, as the real providers compute them."""

    def __init__(self, exit_codes: Mapping[str, int] | None = None) -> None:
        # Every secret value a provider generated (the atoms a leak check or redaction looks for).
        self.generated_secrets: list[str] = []
        # The exit code each attached run-once container reports, by resource name (default 0).
        self.exit_codes = dict(exit_codes or {})

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        plain = reveal(args.inputs)
        typ = args.typ
        if typ == "random:index/randomPassword:RandomPassword":
            state["result"] = values.random_password(plain)
            state["bcryptHash"] = "$2a$10$" + secrets.token_hex(20)
            self.generated_secrets.append(state["result"])
        elif typ == "random:index/randomBytes:RandomBytes":
            raw = secrets.token_bytes(int(plain["length"]))
            state["base64"] = base64.b64encode(raw).decode()
            state["hex"] = raw.hex()
            self.generated_secrets += [state["base64"], state["hex"]]
        elif typ == "random:index/randomId:RandomId":
            # Random bytes, not a secret (the provider marks none of RandomId's outputs secret).
            raw = secrets.token_bytes(int(plain["byteLength"]))
            state["hex"] = raw.hex()
            state["b64Url"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            state["b64Std"] = base64.b64encode(raw).decode()
            state["dec"] = str(int.from_bytes(raw, "big"))
        elif typ == "tls:index/privateKey:PrivateKey":
            keys = values.private_key_outputs(values.private_key(plain))
            state.update(keys)
            self.generated_secrets += [keys["privateKeyPem"], keys["privateKeyPemPkcs8"], keys["privateKeyOpenssh"]]
        elif typ == "tls:index/certRequest:CertRequest":
            state.update(values.cert_request(plain))
        elif typ == "tls:index/selfSignedCert:SelfSignedCert":
            state.update(values.self_signed_cert(plain))
        elif typ == "tls:index/locallySignedCert:LocallySignedCert":
            state.update(values.locally_signed_cert(plain))
        elif typ == "docker:index/container:Container" and plain.get("attach"):
            # pulumi-docker waits for an attached container and records how it exited
            # (terraform-provider-docker's testAccDockerContainerExitCodeConfig).
            state["exitCode"] = self.exit_codes.get(args.name, 0)
        elif typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{secrets.token_hex(32)}"
            state["repoDigest"] = f"{plain['name']}@sha256:{secrets.token_hex(32)}"
        elif typ == "docker:index/image:Image":
            # pulumi-docker's Image (provider/image.go): imageName as given; after a push,
            # repoDigest is the pushed `repository@sha256:` (no tag); with skipPush, the image id.
            state["baseImageName"] = plain["imageName"]
            digest = hashlib.sha256(plain["imageName"].encode()).hexdigest()
            repository = plain["imageName"].rsplit(":", 1)[0]
            state["repoDigest"] = f"sha256:{digest}" if plain.get("skipPush") else f"{repository}@sha256:{digest}"
            return plain["imageName"], state
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mocks_: EngineLikeMocks, prior: Deployment | None = None) -> None:
        super().__init__(mocks_)
        # A previous run's state: as the engine keeps a resource whose inputs did not change,
        # a registration with the same URN and inputs gets that run's id and outputs again.
        self.prior = {r.urn: r for r in prior.registrations} if prior else {}
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        # As MockMonitor.RegisterResource does (the method this one replaces).
        mocks._ensure_event_loop()  # pyright: ignore[reportPrivateImportUsage]
        inputs = rpc.deserialize_properties(request.object)
        args = mocks.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        before = self.prior.get(urn)
        kept = kept_outputs(before, request.type, inputs) if before is not None else None
        if before is not None and kept is not None:
            new_id, state = before.id, kept
        else:
            new_id, state = self.mocks.new_resource(args)
        id_ = new_id or ""  # EngineLikeMocks always names one; the engine's preview id is ""
        # What the engine does and MockMonitor does not: mark the declared secret outputs secret.
        for key in request.additionalSecretOutputs:
            if key in state and not is_secret(state[key]):
                state[key] = _secret(state[key])
        with self._lock:
            self.resources[urn] = mocks.MockMonitor.ResourceRegistration(urn, id_, state)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=urn,
                    parent=request.parent,
                    custom=request.custom,
                    protect=request.protect,
                    retain_on_delete=request.retainOnDelete,
                    delete_before_replace=request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
                    dependencies=list(request.dependencies),
                    inputs=inputs,
                    outputs=state,
                    id=id_,
                )
            )
        obj = _sync_await(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj)

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if "::pulumi:pulumi:Stack::" in request.urn:
            # A protobuf Struct has only doubles, so 3 comes back as 3.0; `pulumi stack output
            # --json` prints 3 (Go's encoding of a whole float64), and auditors diff against that.
            self.stack_outputs = integral(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)


@dataclass
class Deployment:
    stack: str
    config: dict[str, str]
    registrations: list[Registration]
    outputs: dict[str, Any]
    generated_secrets: list[str] = field(default_factory=list)
    secret_keys: list[str] = field(default_factory=list)
    # Secure config keys whose value is a stand-in (not decrypted), with the reason.
    stand_ins: dict[str, str] = field(default_factory=dict)
    # And what each stands for with its value, for a later run to keep (stack_file.resolve).
    stand_in_values: dict[str, tuple[str, str]] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def named(self, name: str, typ: str | None = None) -> Registration:
        found = [r for r in self.registrations if r.name == name and (typ is None or r.type == typ)]
        assert len(found) == 1, f"expected one resource named {name} ({typ}), found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]

    def ancestors(self, reg: Registration) -> list[Registration]:
        chain = []
        while reg.parent and reg.parent.split("::")[2] != "pulumi:pulumi:Stack":
            reg = self.by_urn(reg.parent)
            chain.append(reg)
        return chain

    def depends_on(self, reg: Registration, other: Registration) -> bool:
        """True if ``reg`` waits for ``other``, directly or through its own dependencies."""
        seen: set[str] = set()
        todo = list(reg.dependencies)
        while todo:
            urn = todo.pop()
            if urn == other.urn:
                return True
            if urn in seen:
                continue
            seen.add(urn)
            found = [r for r in self.registrations if r.urn == urn]
            if found:
                todo += found[0].dependencies
        return False


def stack_config(stack: str, project_dir: Path = ROOT) -> dict[str, Any]:
    """Pulumi.yaml defaults overlaid with the stack file's plain values, keys without the namespace.

    ``secure:`` values are left out: run_program passes them as secret config. A stack without
    its Pulumi.<stack>.yaml is a StackFileError (offline there is no backend that knows it).
    """
    return _plain_config(stack_file.read(project_dir, stack), _project_defaults(project_dir))


def _project_defaults(project_dir: Path) -> dict[str, Any]:
    project = stack_file.load_yaml((project_dir / "Pulumi.yaml").read_text())
    return {key: decl["default"] for key, decl in project["config"].items() if "default" in decl}


def _plain_config(file: stack_file.StackFile, defaults: dict[str, Any]) -> dict[str, Any]:
    values = dict(defaults)
    for key, value in file.config.items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and not stack_file.has_secure(value):
            values[name] = value
    return values


def _drop_what_a_failed_run_left() -> None:
    """A run that failed mid-way (a resource's input raised) leaves registrations in flight: the
    CLI's process would exit, but the next run in this one would see them finish and report their
    error as its own. Let them finish (each round waits for the RPCs it finds), then forget them."""
    manager = runtime_settings._get_rpc_manager()  # no public reset in the SDK
    for _ in range(100):
        manager.clear()
        try:
            _sync_await(wait_for_rpcs())
        except Exception:  # the failed run's own errors, reported already
            continue
        if not asyncio.all_tasks(asyncio.get_event_loop()):
            break
    manager.clear()


def run_program(
    stack: str,
    overrides: dict[str, Any] | None = None,
    secret_config: dict[str, str] | None = None,
    plain_config: dict[str, str] | None = None,
    *,
    project_dir: Path = ROOT,
    passphrase: str | None = None,
    prior: Deployment | None = None,
    exit_codes: Mapping[str, int] | None = None,
) -> Deployment:
    """Run __main__.py for ``stack`` under the mocks and return everything it declared.

    ``exit_codes`` gives the exit code of attached run-once containers by resource name (0 for
    the others), as pulumi-docker records it once the container has exited.

    ``prior`` is the state of an earlier run (as `pulumi up` keeps it): resources whose inputs
    are unchanged, or changed only where the provider updates in place, keep their outputs
    (passwords, keys, certificates), so only what the change touches differs; so do stand-ins.

    Config is what the CLI would pass for ``project_dir``'s Pulumi.yaml and Pulumi.<stack>.yaml:
    every value a string, ``secure:`` values as secret config — decrypted with ``passphrase``,
    or stand-ins without it (listed in ``Deployment.stand_ins``). ``secret_config`` is set as
    encrypted config (``config set --secret``); ``plain_config`` sets supplied-secret keys in
    plain text, which the program must refuse.
    """
    file = stack_file.read(project_dir, stack)
    defaults = _project_defaults(project_dir)
    values = {**_plain_config(file, defaults), **(overrides or {})}
    domain = values.get("domain")
    secure = stack_file.resolve(
        file,
        PROJECT,
        passphrase,
        domain=domain if isinstance(domain, str) and domain else "aixsss.localhost",
        defaults=defaults,
        kept=prior.stand_in_values if prior else None,
    )
    config = {f"{PROJECT}:{k}": stack_file.config_string(v) for k, v in values.items()}
    # Other namespaces reach the program too, as the CLI passes every key: the program reports
    # one that looks like a misspelt `aixsss:`. Their secure values stay ciphertext, marked secret.
    foreign_secure = []
    for key, value in file.config.items():
        if key.partition(":")[0] != PROJECT:
            if stack_file.has_secure(value):
                config[key] = "[secure]"  # the program reads only the key's name
                foreign_secure.append(key)
            else:
                config[key] = stack_file.config_string(value)
    # An override replaces a secure value as `config set` without --secret would: plain.
    secure_values = {k: v for k, v in secure.values.items() if k.partition(":")[2] not in (overrides or {})}
    secret_keys = list(foreign_secure)
    for key, value in {**secure_values, **{f"{PROJECT}:{k}": v for k, v in (secret_config or {}).items()}}.items():
        config[key] = value
        secret_keys.append(key)
    for key, value in (plain_config or {}).items():
        config[f"{PROJECT}:{key}"] = value
        if f"{PROJECT}:{key}" in secret_keys:
            secret_keys.remove(f"{PROJECT}:{key}")
    pulumi.runtime.set_all_config(config, secret_keys)
    engine_mocks = EngineLikeMocks(exit_codes)
    if prior is not None:
        engine_mocks.generated_secrets += prior.generated_secrets
    monitor = RecordingMonitor(engine_mocks, prior)
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(engine_mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    # The engine reports Pulumi.yaml's directory; the program finds its stack file there.
    # No setter in the SDK (only _set_project/_set_stack); Settings' context properties take a str.
    setattr(runtime_settings.SETTINGS, "root_directory", str(project_dir.resolve()))  # noqa: B010
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]

    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    try:
        _sync_await(run_in_stack(program))
    except BaseException:
        _drop_what_a_failed_run_left()
        raise
    finally:
        runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    stand_ins = {k: why for k, why in secure.stand_ins.items() if k in secure_values}
    return Deployment(
        stack,
        config,
        monitor.registrations,
        monitor.stack_outputs,
        engine_mocks.generated_secrets,
        secret_keys,
        stand_ins,
        {k: v for k, v in secure.stand_in_values.items() if k in secure_values},
    )

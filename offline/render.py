"""`make render STACK=<stack> [TARGET=docker|kubernetes]`: what a stack would deploy, as files.

Runs the real program offline (offline.engine), then writes build/<stack>/:
kubernetes/ or docker/, config/, certs/, audit.json, architecture.svg and summary.txt.
What the providers generated is kept in build/.state/ (offline.state), so an unchanged stack
renders the same files again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from offline import diagram, objects, state, topology
from offline.engine import ROOT, Deployment, Registration, reveal, run_program, stack_config
from offline.passphrase import SecretsError, passphrase_from_env
from offline.redact import Redactor
from offline.stack_file import NOT_DECRYPTED, StackFileError

TLS_CERT_TYPES = ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert")
# API groups Kubernetes itself serves; anything else is a custom resource that needs its CRD.
BUILT_IN_GROUPS = {
    "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io",
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "certificates.k8s.io", "events.k8s.io",
}  # fmt: skip
SECRET_MODE, PLAIN_MODE = 0o600, 0o644


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


@dataclass
class Rendered:
    out: Path
    deployment: Deployment
    topology: topology.Topology
    files: dict[str, int] = field(default_factory=dict)  # relative path -> mode
    custom_resources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    state: Path | None = None  # what the providers generated, for the next render (offline.state)

    def write(self, relative: str, content: str, *, secret: bool) -> None:
        path = self.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        mode = SECRET_MODE if secret else PLAIN_MODE
        path.chmod(mode)
        self.files[relative] = mode


def service_of(deployment: Deployment, reg: Registration) -> str:
    """The component a resource belongs to: a service, or the platform, PKI or secrets."""
    for ancestor in [reg, *deployment.ancestors(reg)]:
        if ancestor.type.startswith("aixsss:service:"):
            return ancestor.name
    for ancestor in [reg, *deployment.ancestors(reg)]:
        if ancestor.type.startswith("aixsss:"):
            return ancestor.type.split(":")[-1].lower()
    return "stack"


def _kubernetes(result: Rendered, redactor: Redactor) -> list[objects.GeneratedFile]:
    deployed = []
    # In URN order: the registrations' order varies from run to run (the warnings list these).
    for reg in sorted(objects.kubernetes_registrations(result.deployment), key=lambda r: r.urn):
        obj = objects.tidy(redactor.value(reg.inputs))
        if obj["apiVersion"].rpartition("/")[0] not in BUILT_IN_GROUPS:
            result.custom_resources.append(f"{obj['apiVersion']} {obj['kind']} {obj['metadata']['name']}")
        result.write(f"kubernetes/{objects.manifest_path(obj)}", to_yaml(obj), secret=redactor.holds_secret(reg.inputs))
        deployed.append(objects.tidy(reveal(reg.inputs)))
    return objects.kubernetes_files(deployed)


def _docker(result: Rendered, redactor: Redactor) -> list[objects.GeneratedFile]:
    files = objects.docker_files(result.deployment)
    plan = objects.docker_plan(result.deployment, files)
    secret = any(redactor.holds_secret(item) for section in plan.values() for item in section)
    header = "# What `pulumi up` would create on the Docker host; uploaded files are under config/.\n"
    result.write("docker/plan.yaml", header + to_yaml(objects.tidy(redactor.value(plan))), secret=secret)
    return files


def _certificates(result: Rendered, redactor: Redactor) -> None:
    deployment = result.deployment
    for reg in deployment.registrations:
        base = reg.name.removesuffix("-cert").removesuffix("-key")
        if reg.type in TLS_CERT_TYPES:
            result.write(f"certs/{base}.crt", reveal(reg.outputs["certPem"]), secret=False)
        elif reg.type == "tls:index/privateKey:PrivateKey":
            key = reveal(reg.outputs["privateKeyPem"])
            result.write(f"certs/{base}.key", redactor.text(key), secret=True)


def _warnings(result: Rendered) -> None:
    # First: with a stand-in, what was rendered is not what the stack would deploy.
    for key, why in result.deployment.stand_ins.items():
        result.warnings.append(f"{key}: {NOT_DECRYPTED} ({why})")
    topo = result.topology
    for edge in topo.edges:
        from_outside = edge.client.startswith(topology.WORLD) or edge.client == topology.HOST
        if not edge.tls and not from_outside and edge.server != topology.EGRESS:
            result.warnings.append(f"plain-text flow {edge.client} -> {edge.server}:{edge.ports} (inside the stack)")
        if edge.client == topology.HOST:
            result.warnings.append(f"{edge.server} is published on 127.0.0.1:{edge.ports} for local tools")
    for line in result.custom_resources:
        result.warnings.append(f"custom resource without a bundled schema: {line} (needs its CRD in the cluster)")
    audit = reveal(result.deployment.outputs)
    for item in (audit.get("checklist") or {}).values():
        if isinstance(item, dict) and not item.get("ok", True):
            result.warnings.append(f"checklist: {item}")


def summary(result: Rendered) -> str:
    per_service = Counter(service_of(result.deployment, r) for r in result.deployment.registrations if r.custom)
    lines = [f"{'component':<16} resources", *(f"{name:<16} {count}" for name, count in sorted(per_service.items()))]
    lines += ["", f"{'flow':<40} {'ports':<12} {'TLS':<5} auth"]
    for e in result.topology.edges:
        flow = f"{e.client} -> {e.server}"
        lines.append(f"{flow:<40} {','.join(map(str, e.ports)):<12} {'yes' if e.tls else 'no':<5} {e.auth}")
    lines += ["", "warnings:" if result.warnings else "warnings: none", *(f"  - {w}" for w in result.warnings)]
    return "\n".join(lines) + "\n"


def render(
    stack: str,
    target: str | None = None,
    out_root: Path | None = None,
    show_secrets: bool = False,
    *,
    project_dir: Path = ROOT,
    passphrase: str | None = None,
    settings: dict[str, str] | None = None,
) -> Rendered:
    """Render ``project_dir``'s stack; ``passphrase`` decrypts its secure values (else stand-ins).

    ``settings`` are config values on top of the stack file, as `pulumi config set` would put them.
    """
    overrides = {**({"target": target} if target else {}), **(settings or {})}
    out_root = out_root or ROOT / "build"
    target = str(overrides.get("target") or stack_config(stack, project_dir)["target"])
    state_file = state.path(out_root, stack, target)
    deployment = run_program(
        stack,
        overrides=overrides or None,
        project_dir=project_dir,
        passphrase=passphrase,
        prior=state.load(state_file, stack),
    )
    atoms = [*deployment.generated_secrets, *(deployment.config[k] for k in deployment.secret_keys)]
    redactor = Redactor(atoms, show_secrets)
    out = out_root / stack
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = Rendered(out, deployment, topology.of(deployment), state=state_file)
    kubernetes = bool(objects.kubernetes_registrations(deployment))
    files = _kubernetes(result, redactor) if kubernetes else _docker(result, redactor)
    for f in files:
        secret = redactor.contains_secret(f.content)
        result.write(f"config/{f.relative}", redactor.text(f.content), secret=secret)
    _certificates(result, redactor)
    audit = json.dumps(redactor.value(deployment.outputs), indent=2, sort_keys=True) + "\n"
    result.write("audit.json", audit, secret=redactor.holds_secret(deployment.outputs))
    title = f"aixsss {stack} on {'Kubernetes' if kubernetes else 'Docker'}"
    result.write("architecture.svg", diagram.render_svg(result.topology, title), secret=False)
    _warnings(result)
    result.write("summary.txt", summary(result), secret=False)
    state.save(state_file, deployment)
    return result


def _run_error(exc: BaseException) -> pulumi.RunError | None:
    """The program's RunError, also when the runtime re-raised it wrapped in another exception."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, pulumi.RunError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make render", description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--stack", required=True, help="any stack with a Pulumi.<stack>.yaml")
    parser.add_argument("--target", choices=("docker", "kubernetes"), help="override the stack's target")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="default: build/")
    parser.add_argument("--show-secrets", action="store_true", help="write secret values instead of [redacted]")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="where Pulumi.yaml and the stack files are")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config value on top of the stack file, e.g. edge.replicas=1 (repeatable)",
    )
    args = parser.parse_args(argv)
    settings: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item}: expected KEY=VALUE")
        settings[key.removeprefix("aixsss:")] = value
    try:
        result = render(
            args.stack,
            args.target,
            args.out,
            args.show_secrets,
            project_dir=args.project_dir,
            passphrase=passphrase_from_env(),
            settings=settings,
        )
    except (StackFileError, SecretsError, state.RenderStateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Bad config: the program's message already names the file, key, value and what is
        # allowed; a traceback would only bury it.
        run_error = _run_error(exc)
        if run_error is None:
            raise
        print(f"error: {run_error}", file=sys.stderr)
        return 2
    sys.stdout.write(summary(result))
    secret_files = sum(1 for mode in result.files.values() if mode == SECRET_MODE)
    print(f"\nwrote {len(result.files)} files to {result.out} ({secret_files} with mode 0600)")
    print(f"generated values kept in {result.state} (0600, delete it to generate afresh)")
    if not args.show_secrets:
        print("secret values are [redacted]; --show-secrets writes them (files stay 0600)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

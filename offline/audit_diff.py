"""The audit diff of a pull request: what changes for an auditor between two renders of the stacks.

    python -m offline.audit_diff render --out DIR [--state-from BASE_DIR]   (in each checkout)
    python -m offline.audit_diff diff --base BASE_DIR --head HEAD_DIR --markdown F --json F
    python -m offline.audit_diff compare --base-ref REF [--out DIR]          (both, from git refs)

``render`` runs `make render`'s own function for every stack on both targets into
DIR/<target>/<stack>/ and adds audit-facts.json (offline.audit_facts). The head is rendered
from the base's render state (``--state-from``): what the providers generated is kept unless the
change replaces it, as `pulumi up` would keep it, so only the secrets a change rotates differ.
``diff`` reads audit.json and audit-facts.json of both sides; nothing is derived anew here.
No credentials: secure config values render as stand-ins, kept while their ciphertext is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from offline.engine import ROOT, STACKS

TARGETS = ("docker", "kubernetes")
ERROR = "render-error.txt"
MARKER = "<!-- aixsss-audit-diff -->"
# The sections of the diff, in the order the comment shows them.
SECTIONS = {
    "flowsAdded": "Flows added",
    "flowsRemoved": "Flows removed",
    "portsPublished": "Ports published",
    "portsWithdrawn": "Ports no longer published",
    "tlsAuthChanged": "TLS / authentication changed per hop",
    "imagesChanged": "Images changed",
    "secretsRotated": "Secrets rotated (fingerprints only)",
    "checklistChanged": "Checklist items that changed state",
    "protectedReplaced": "Protected resources that would be replaced",
}


# ---- render -------------------------------------------------------------------------------


def render_all(
    out: Path,
    state_from: Path | None,
    settings: dict[str, str] | None = None,
    *,
    stacks: tuple[str, ...] = STACKS,
    targets: tuple[str, ...] = TARGETS,
    project_dir: Path = ROOT,
) -> None:
    """Every stack on both targets into out/<target>/<stack>/; a refused config is recorded.

    ``settings`` are config values on top of every stack file (`make render SET=...`).
    """
    from offline import audit_facts, state
    from offline.redact import Redactor
    from offline.render import _run_error, render
    from offline.stack_file import StackFileError

    for target in targets:
        for stack in stacks:
            root = out / target
            if not (project_dir / f"Pulumi.{stack}.yaml").exists():
                continue  # no such stack here (one side may add or remove a stack file)
            kept = state_from is not None and state.path(state_from / target, stack, target).exists()
            if kept:
                assert state_from is not None
                state.path(root, stack, target).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                shutil.copy2(state.path(state_from / target, stack, target), state.path(root, stack, target))
            try:
                try:
                    result = render(stack, target, root, settings=settings, project_dir=project_dir)
                except state.RenderStateError:
                    # The head changed the state's format: render afresh; its secrets are then
                    # new ones, which the diff says instead of listing them as rotated.
                    state.path(root, stack, target).unlink()
                    kept = False
                    result = render(stack, target, root, settings=settings, project_dir=project_dir)
            except StackFileError as exc:
                _refused(root / stack, str(exc))
                continue
            except Exception as exc:  # a config this target refuses: part of the diff, not a crash
                run_error = _run_error(exc)
                if run_error is None:
                    raise
                _refused(root / stack, str(run_error))
                continue
            d = result.deployment
            redactor = Redactor([*d.generated_secrets, *(d.config[k] for k in d.secret_keys)], False)
            audit_facts.write(result, redactor, from_base_state=kept or state_from is None)


def _refused(directory: Path, message: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / ERROR).write_text(message + "\n")


# ---- diff ---------------------------------------------------------------------------------


def _load(side: Path, target: str, stack: str) -> dict[str, Any] | str | None:
    """The side's audit view and facts, its render error (str), or None when it has neither."""
    directory = side / target / stack
    if (directory / ERROR).exists():
        return (directory / ERROR).read_text().strip()
    audit, facts = directory / "audit.json", directory / "audit-facts.json"
    if not audit.exists() or not facts.exists():
        return None
    return {**json.loads(audit.read_text()), "facts": json.loads(facts.read_text())}


def _flow_key(f: dict[str, Any]) -> str:
    return f"{f['client']} -> {f['server']}:{','.join(map(str, f['ports']))}"


def _flow_text(f: dict[str, Any]) -> str:
    return f"{_flow_key(f)} ({'TLS' if f['tls'] else 'plain text'}, auth {f['auth']})"


def compare(base: dict[str, Any], head: dict[str, Any]) -> dict[str, list[str]]:
    """The security-relevant differences between two renders of one stack on one target."""
    diff: dict[str, list[str]] = {key: [] for key in SECTIONS}
    flows = [{_flow_key(f): f for f in side["facts"]["flows"]} for side in (base, head)]
    diff["flowsAdded"] = [_flow_text(flows[1][k]) for k in sorted(flows[1].keys() - flows[0].keys())]
    diff["flowsRemoved"] = [_flow_text(flows[0][k]) for k in sorted(flows[0].keys() - flows[1].keys())]
    for key in sorted(flows[0].keys() & flows[1].keys()):
        before, after = flows[0][key], flows[1][key]
        if before["tls"] != after["tls"]:
            diff["tlsAuthChanged"].append(
                f"{key}: TLS {'on' if before['tls'] else 'off'} -> {'on' if after['tls'] else 'off'}"
            )
        if before["auth"] != after["auth"]:
            diff["tlsAuthChanged"].append(f"{key}: auth {before['auth']} -> {after['auth']}")
    services = [side.get("services") or {} for side in (base, head)]
    for name in sorted(services[0].keys() | services[1].keys()):
        before, after = services[0].get(name) or {}, services[1].get(name) or {}
        published = set(after.get("exposedPorts") or []) - set(before.get("exposedPorts") or [])
        withdrawn = set(before.get("exposedPorts") or []) - set(after.get("exposedPorts") or [])
        diff["portsPublished"] += [f"{name}: {p}" for p in sorted(published)]
        diff["portsWithdrawn"] += [f"{name}: {p}" for p in sorted(withdrawn)]
        if before and after:
            for field in ("tls", "auth"):
                if before.get(field) != after.get(field):
                    diff["tlsAuthChanged"].append(f"{name} ({field}): {before.get(field)!r} -> {after.get(field)!r}")
    images = [side.get("images") or {} for side in (base, head)]
    for name in sorted(images[0].keys() | images[1].keys()):
        if images[0].get(name) != images[1].get(name):
            diff["imagesChanged"].append(
                f"{name}: {images[0].get(name) or '(none)'} -> {images[1].get(name) or '(none)'}"
            )
    secrets = [side["facts"]["secrets"] for side in (base, head)]
    if not head["facts"].get("fromBaseState", True):
        diff["secretsRotated"].append(
            "not comparable: the head rendered afresh (the base's render state was unreadable)"
        )
        secrets = [{}, {}]
    for name in sorted(secrets[0].keys() | secrets[1].keys()):
        before, after = secrets[0].get(name), secrets[1].get(name)
        if before != after:
            diff["secretsRotated"].append(f"{name}: {before or '(none)'} -> {after or '(none)'}")
    checks = [side.get("checklist") or {} for side in (base, head)]
    for name in sorted(checks[0].keys() | checks[1].keys()):
        before, after = _ok(checks[0].get(name)), _ok(checks[1].get(name))
        if before != after:
            reason = (checks[1].get(name) or {}).get("reason", "") if isinstance(checks[1].get(name), dict) else ""
            diff["checklistChanged"].append(f"{name}: {before} -> {after}" + (f" ({reason})" if reason else ""))
    diff["protectedReplaced"] = _protected(base["facts"], head["facts"])
    return diff


def _ok(item: Any) -> str:
    if item is None:
        return "absent"
    return "ok" if isinstance(item, dict) and item.get("ok", True) else "NOT ok"


def _protected(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """Resources protected in the base that the head would replace, delete or unprotect.

    Replaced: an input that makes the provider replace it changed (audit_facts.replaced_by).
    Deleted: its URN is gone (renamed, re-parented or removed; without an alias the engine
    deletes it, which `protect` refuses). New protected resources are creations, not listed.
    """
    found = []
    head_urns = set(head["urns"])
    for urn, before in sorted(base["protected"].items()):
        name = f"{before['type'].split(':')[-1]} {before['name']}"
        after = head["protected"].get(urn)
        if urn not in head_urns:
            found.append(f"{name}: gone from the head (renamed, moved or removed: a delete, which protect refuses)")
        elif after is None:
            found.append(f"{name}: no longer protected")
        else:
            old, new = before["replacedBy"], after["replacedBy"]
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            if changed:
                found.append(f"{name}: replaced (changed: {', '.join(changed)})")
    return found


def diff_dirs(base: Path, head: Path) -> dict[str, Any]:
    """Every stack x target: its differences, or why one side has none to compare."""
    report: dict[str, Any] = {}
    for target in TARGETS:
        for stack in STACKS:
            b, h = _load(base, target, stack), _load(head, target, stack)
            key = f"{stack}/{target}"
            if b is None and h is None:
                continue  # neither side rendered it (render_all limited to some stacks)
            if b is None or h is None:
                side = "base (from before the audit diff?)" if b is None else "head"
                report[key] = {"status": f"not rendered with audit facts: {side}"}
            elif isinstance(b, dict) and isinstance(h, dict):
                report[key] = {"status": "compared", **compare(b, h)}
            elif isinstance(b, str) and isinstance(h, str):
                report[key] = {"status": "refused by both"}
            elif isinstance(h, str):
                report[key] = {"status": "refused by the head", "head": h}
            else:
                report[key] = {"status": "refused by the base, renders in the head"}
    return report


def changes(entry: dict[str, Any]) -> int:
    return sum(len(entry.get(key) or []) for key in SECTIONS)


def _code(text: str) -> str:
    return text.replace("`", "'")


def markdown(report: dict[str, Any], title: str = "") -> str:
    lines = [MARKER, f"## Audit diff{': ' + title if title else ''}", ""]
    lines.append(
        "Rendered offline (`make render`, no credentials: secure config values are stand-ins) for every "
        "stack on both targets; the head from the base's render state, so a secret listed here is one this "
        "change regenerates. Fingerprints are salted digests of the render's values, not of deployed ones."
    )
    quiet = [key for key, entry in report.items() if entry["status"] == "compared" and not changes(entry)]
    refused = [key for key, entry in report.items() if entry["status"] == "refused by both"]
    for key, entry in report.items():
        if key in quiet or key in refused:
            continue
        lines += ["", f"### {key}"]
        if entry["status"] != "compared":
            lines.append(f"*{entry['status']}*")
            if entry["status"] == "refused by the head":
                lines += ["", "```", _code(entry["head"]), "```"]
            continue
        for section, heading in SECTIONS.items():
            if entry[section]:
                # Backticks inside an item (a checklist reason) would end its code span.
                lines += ["", f"**{heading}**", *(f"- `{_code(item)}`" for item in entry[section])]
    if quiet:
        lines += ["", f"No security-relevant change: {', '.join(quiet)}."]
    if refused:
        lines += [
            "",
            f"Not valid on that target in the base or the head (the config refuses it): {', '.join(refused)}.",
        ]
    return "\n".join(lines) + "\n"


# GitHub refuses a comment over 65536 characters.
COMMENT_LIMIT = 60000


def write_reports(report: dict[str, Any], markdown_file: Path | None, json_file: Path | None, title: str) -> str:
    text = markdown(report, title)
    if len(text) > COMMENT_LIMIT:
        text = text[:COMMENT_LIMIT] + "\n\n*(cut at GitHub's comment size; the JSON report has all of it)*\n"
    if markdown_file is not None:
        markdown_file.parent.mkdir(parents=True, exist_ok=True)
        markdown_file.write_text(text)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return text


# ---- compare: both sides from git refs, for `make audit-diff BASE=<ref>` ------------------


def _render_in(checkout: Path, out: Path, state_from: Path | None) -> None:
    """The checkout's own code renders its own stacks (a subprocess: its modules, not ours)."""
    argv = [sys.executable, "-m", "offline.audit_diff", "render", "--out", str(out)]
    if state_from is not None:
        argv += ["--state-from", str(state_from)]
    subprocess.run(argv, cwd=checkout, check=True)


def compare_refs(base_ref: str, out: Path, head: Path = ROOT) -> dict[str, Any]:
    """The base ref in a temporary git worktree against ``head`` (this checkout, as it is)."""
    with tempfile.TemporaryDirectory(prefix="audit-diff-") as tmp:
        base_checkout = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_checkout), base_ref], cwd=head, check=True)
        try:
            shutil.rmtree(out, ignore_errors=True)
            if (base_checkout / "offline/audit_diff.py").exists():
                _render_in(base_checkout, out / "base", None)
            else:  # a base from before the audit diff: the head alone, and the report says so
                print(f"{base_ref} predates offline/audit_diff.py: nothing to compare against", file=sys.stderr)
            _render_in(head, out / "head", out / "base")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_checkout)], cwd=head, check=True)
    return diff_dirs(out / "base", out / "head")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.audit_diff", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="every stack on both targets, with audit facts, into --out")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--state-from", type=Path, help="the base's --out: start from its render state")
    r.add_argument("--project-dir", type=Path, default=ROOT, help="where Pulumi.yaml and the stack files are")
    d = sub.add_parser("diff", help="compare two --out directories")
    d.add_argument("--base", type=Path, required=True)
    d.add_argument("--head", type=Path, required=True)
    c = sub.add_parser("compare", help="render --base-ref in a git worktree and this checkout, then diff")
    c.add_argument("--base-ref", required=True)
    c.add_argument("--out", type=Path, default=ROOT / "build/audit-diff")
    for p in (d, c):
        p.add_argument("--markdown", type=Path, help="the PR comment (default for compare: <out>/audit-diff.md)")
        p.add_argument("--json", type=Path, help="the report (default for compare: <out>/audit-diff.json)")
        p.add_argument("--title", default="", help="shown in the comment's heading")
    args = parser.parse_args(argv)
    if args.command == "render":
        render_all(args.out, args.state_from, project_dir=args.project_dir)
        return 0
    if args.command == "diff":
        report = diff_dirs(args.base, args.head)
    else:
        report = compare_refs(args.base_ref, args.out)
        args.title = args.title or f"{args.base_ref} -> this checkout"
        args.markdown = args.markdown or args.out / "audit-diff.md"
        args.json = args.json or args.out / "audit-diff.json"
    sys.stdout.write(write_reports(report, args.markdown, args.json, args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Releases as data and rollback that knows about migrations (issue 13, items 2 and 3).

The history lives in the stack file (``aixsss:releases``, one ``key=value`` line per release);
the config model refuses a rollback across a migration not declared backward compatible, the
program deploys an allowed one with the recorded images and no migration job, the api carries
its release record for the policy pack, and `make release`/`make rollback`'s script edits the
stack file through the Pulumi CLI. There is no Pulumi CLI here: the script runs against a fake
`pulumi` that edits a copy of the stack file as `pulumi config set --path` would, and the
program is evaluated under the offline engine's mocks on the result.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aixsss_policy.rules import STACK_RULES
from harness import PINNED, ROOT, Deployment, reveal, run_program
from test_policy import RULE, args_of, stack_violations, violations

from components.config import StackConfigError, check_stack_config
from components.config.releases import MAX_RELEASES, parse_history

CONTAINER = "docker:index/container:Container"
JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
GIVEN = {**PINNED, "app.source": ""}


def line(name: str, head: str, tag: str, *, compatible: bool = False, new: str = "") -> str:
    images = " ".join(f"{n}=ghcr.io/aixsss/{n}:{tag}" for n in ("api", "worker", "web"))
    added = f" new={new}" if new else ""
    return f"name={name} head={head} compatible={'true' if compatible else 'false'}{added} {images}"


R1 = line("r1", "000_init", "1.0.0")
# r2 adds two migrations; r3 changes only code (same head).
R2_UNSAFE = line("r2", "002_drop_title", "2.0.0", new="001_add_tag,002_drop_title")
R2_SAFE = line("r2", "002_drop_title", "2.0.0", compatible=True, new="001_add_tag,002_drop_title")
R3 = line("r3", "002_drop_title", "3.0.0")
CURRENT = {"images.api": "ghcr.io/aixsss/api:3.0.0", "images.worker": "ghcr.io/aixsss/worker:3.0.0"}
CURRENT |= {"images.web": "ghcr.io/aixsss/web:3.0.0", "release.name": "r3", "release.migrationHead": "002_drop_title"}

# A release after every entry the bound tests record (their heads are 000_m … 019_m).
LATEST = {"release.name": "r99", "release.migrationHead": "999_last"}


def problems(flat: dict[str, Any], stack: str = "dev") -> list[str]:
    _, found = check_stack_config({**GIVEN, **flat}, stack)
    return [p.line(f"Pulumi.{stack}.yaml", False) for p in found]


# ------------------------------------------------------------------------------ config model


def test_rollback_across_an_incompatible_migration_is_refused_naming_it() -> None:
    found = problems({**CURRENT, "releases": [R1, R2_UNSAFE, R3], "release.rollbackTo": "r1"})
    assert len(found) == 1, found
    message = found[0]
    assert message.startswith("Pulumi.dev.yaml: aixsss:release.rollbackTo = 'r1' is not allowed: no rollback to r1")
    # The first migration of the release that moved the schema, and what to do instead.
    assert "release r2 applied migration 001_add_tag (the first of 2, up to 002_drop_title)" in message
    assert "not declared backward compatible" in message
    assert "Restore the database from a backup taken before r2" in message and "roll forward" in message


def test_rollback_across_compatible_migrations_only_is_allowed() -> None:
    assert problems({**CURRENT, "releases": [R1, R2_SAFE, R3], "release.rollbackTo": "r1"}) == []
    # r3 to r2 crosses no migration at all (same head), even with r2's own migrations unsafe.
    assert problems({**CURRENT, "releases": [R1, R2_UNSAFE, R3], "release.rollbackTo": "r2"}) == []


def test_the_first_incompatible_release_is_named_not_a_later_one() -> None:
    r3 = line("r3", "003_more", "3.0.0", new="003_more")
    found = problems(
        {**CURRENT, "release.migrationHead": "003_more", "releases": [R1, R2_SAFE, r3], "release.rollbackTo": "r1"}
    )
    assert len(found) == 1 and "release r3 applied migration 003_more," in found[0], found


def test_rollback_to_an_unrecorded_release_lists_the_recorded_ones() -> None:
    [found] = problems({**CURRENT, "releases": [R1, R3], "release.rollbackTo": "r9"})
    assert "aixsss:release.rollbackTo = 'r9'" in found and "(recorded: r1, r3)" in found


def test_history_is_bounded() -> None:
    lines = [line(f"r{i}", f"{i:03d}_m", f"{i}.0.0") for i in range(MAX_RELEASES)]
    at_most = {**CURRENT, **LATEST, "releases": lines}
    assert problems(at_most) == []  # control: the bound itself is allowed
    [found] = problems({**at_most, "releases": [*lines, line("r20", "020_m", "20.0.0")]})
    assert "aixsss:releases = " in found and f"at most {MAX_RELEASES} releases (found {MAX_RELEASES + 1})" in found


def test_bad_history_entries_are_each_named() -> None:
    [found] = problems(
        {**CURRENT, "releases": [R1, "name=r2 head=001 api=x", R1.replace("compatible=false", "compatible=maybe"), R1]}
    )
    assert "releases[1]: worker= missing; web= missing" in found
    assert "releases[2]: compatible= is true or false" in found
    assert "releases[3]: the name r1 is taken by an earlier entry" in found


def test_given_images_must_declare_their_migration_head_once_releases_are_recorded() -> None:
    without = {k: v for k, v in CURRENT.items() if k != "release.migrationHead"}
    [found] = problems({**without, "releases": [R1]})
    assert "aixsss:release.migrationHead = '' (default) is not allowed: the newest migration in images.api" in found
    assert problems({**without, "releases": []}) == []  # control: no history, nothing to judge


def test_a_recorded_name_cannot_be_reused_for_other_images() -> None:
    [found] = problems({**CURRENT, "release.name": "r1", "releases": [R1]})
    assert "aixsss:release.name = 'r1' is not allowed: a new name: r1 is recorded" in found
    same = {**CURRENT, "release.name": "r1", "release.migrationHead": "000_init"}
    same |= {f"images.{n}": f"ghcr.io/aixsss/{n}:1.0.0" for n in ("api", "worker", "web")}
    assert problems({**same, "releases": [R1]}) == []  # control: a re-deploy of r1 as recorded


def test_images_older_than_the_schema_are_a_rollback_in_disguise() -> None:
    """Going back by editing images.* would run the old image's migration job on a newer schema,
    unjudged: refused, pointing at release.rollbackTo."""
    old = {**CURRENT, "release.name": "r1-again", "release.migrationHead": "000_init"}
    [found] = problems({**old, "releases": [R1, R2_UNSAFE, R3]})
    assert "aixsss:release.migrationHead = '000_init' is not allowed: a head at least 002_drop_title" in found
    assert "(recorded by r2)" in found and "release.rollbackTo" in found
    assert problems({**old, "releases": [R1]}) == []  # control: nothing newer recorded


def test_a_checkout_older_than_the_schema_is_refused_by_the_program(tmp_path: Path) -> None:
    app = _checkout(tmp_path, ["000_init"])
    with pytest.raises(
        StackConfigError, match=r"aixsss:app.source = .* a checkout whose newest migration \(000_init\)"
    ):
        run_program("dev", overrides={"app.source": str(app), "releases": [R1, R2_SAFE]})
    # Control: the same checkout with nothing newer recorded deploys.
    run_program("dev", overrides={"app.source": str(app), "releases": [R1]})


def test_built_images_read_their_head_instead_of_declaring_it() -> None:
    [found] = problems({"app.source": "../aixsss", "release.migrationHead": "000_init", **{k: "" for k in PINNED}})
    assert "aixsss:release.migrationHead = '000_init' is not allowed: empty while app.source is set" in found


def test_history_images_are_pinned_outside_dev() -> None:
    unpinned = R1.replace("ghcr.io/aixsss/web:1.0.0", "ghcr.io/aixsss/web:latest")
    flat = {**CURRENT, "releases": [unpinned]}
    assert problems(flat, "dev") == []
    found = problems(flat, "staging")
    assert any("releases[0] (r1) web=: a pinned image" in p for p in found), found


def test_a_history_line_round_trips() -> None:
    [release] = parse_history([R2_SAFE])
    assert release.line() == R2_SAFE and release.new_migrations == ("001_add_tag", "002_drop_title")


# ------------------------------------------------------------------------------ the program


def _app_workloads(d: Deployment, target: str) -> dict[str, str]:
    if target == "docker":
        return {n: reveal(d.named(f"{n}-image", "docker:index/remoteImage:RemoteImage").inputs)["name"] for n in
                ("api", "worker", "web")}  # fmt: skip
    return {
        n: reveal(d.named(n, DEPLOYMENT).inputs)["spec"]["template"]["spec"]["containers"][0]["image"]
        for n in ("api", "worker", "web")
    }


def _migration_jobs(d: Deployment) -> list[str]:
    return [r.name for r in [*d.of_type(CONTAINER), *d.of_type(JOB)] if r.name.startswith("api-migrate")
            and not r.name.endswith("-config")]  # fmt: skip


def _record(d: Deployment, target: str) -> dict[str, Any]:
    if target == "docker":
        uploads = reveal(d.named("api-config", CONTAINER).inputs)["uploads"]
        return json.loads(next(u["content"] for u in uploads if u["file"] == "/etc/aixsss/release.json"))
    data = reveal(d.named("api-files", CONFIG_MAP).inputs)["data"]
    return json.loads(data["etc_aixsss_release.json"])


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_an_allowed_rollback_runs_the_recorded_images_and_no_migration_job(target: str) -> None:
    history = {"releases": [R1, R2_SAFE, R3], "target": target}
    # Control: the configured release (r3) runs its images and its migration job.
    current = run_program("dev", overrides={**GIVEN, **CURRENT, **history})
    assert set(_app_workloads(current, target).values()) == {
        f"ghcr.io/aixsss/{n}:3.0.0" for n in ("api", "worker", "web")
    }
    assert _migration_jobs(current)
    assert _record(current, target)["runsMigrations"] is True

    rolled = run_program("dev", overrides={**GIVEN, **CURRENT, **history, "release.rollbackTo": "r1"})
    assert _app_workloads(rolled, target) == {n: f"ghcr.io/aixsss/{n}:1.0.0" for n in ("api", "worker", "web")}
    assert _migration_jobs(rolled) == []
    record = _record(rolled, target)
    assert record["release"] == "r1" and record["migrationHead"] == "000_init"
    assert record["schemaHead"] == "002_drop_title" and record["rollbackFrom"] == "r3"
    assert [s["release"] for s in record["appliedSince"]] == ["r2"]
    out = reveal(rolled.outputs)
    assert "api-migrate" not in out["services"] and "api-migrate" not in out["images"]
    releases = out["releases"]
    assert releases["deployed"] == "r1" and releases["migrationJob"] is False
    assert [h["name"] for h in releases["history"]] == ["r1", "r2", "r3"]  # nothing new recorded
    assert out["imageOrigins"]["api"] == "release r1 (rollback; recorded in aixsss:releases)"


def test_on_a_rollback_api_and_worker_wait_for_postgres_instead_of_the_migrations() -> None:
    history = {**GIVEN, **CURRENT, "releases": [R1, R2_SAFE, R3], "target": "docker"}
    rolled = run_program("dev", overrides={**history, "release.rollbackTo": "r1"})
    postgres = rolled.named("postgres", CONTAINER)
    for name in ("api", "worker"):
        assert rolled.depends_on(rolled.named(name, CONTAINER), postgres), name
    # Control: the measure sees a missing wait (web waits for no database).
    assert not rolled.depends_on(rolled.named("web", CONTAINER), postgres)


def test_a_refused_rollback_stops_the_program_before_any_resource() -> None:
    overrides = {**GIVEN, **CURRENT, "releases": [R1, R2_UNSAFE, R3], "release.rollbackTo": "r1"}
    with pytest.raises(StackConfigError, match="release r2 applied migration 001_add_tag") as refused:
        run_program("dev", overrides=overrides)
    assert "nothing was deployed" in str(refused.value)


def test_the_releases_output_records_this_deploy_last_and_bounded() -> None:
    lines = [line(f"r{i}", f"{i:03d}_m", f"{i}.0.0") for i in range(MAX_RELEASES)]
    d = run_program(
        "dev",
        overrides={**GIVEN, **CURRENT, **LATEST, "releases": lines},
    )
    releases = reveal(d.outputs)["releases"]
    assert len(releases["history"]) == MAX_RELEASES  # the oldest dropped, this deploy last
    assert releases["history"][0]["name"] == "r1" and releases["history"][-1]["name"] == "r99"
    current = releases["history"][-1]
    assert current["images"] == {n: f"ghcr.io/aixsss/{n}:3.0.0" for n in ("api", "worker", "web")}
    assert current["migrationHead"] == "999_last" and current["backwardCompatible"] is False
    assert releases["deployed"] == "r99" and releases["migrationJob"] is True and not releases.get("rollbackFrom")


def _checkout(root: Path, migrations: list[str]) -> Path:
    app = root / "aixsss"
    (app / "apps/api/src").mkdir(parents=True, exist_ok=True)
    (app / "pnpm-workspace.yaml").write_text("packages: ['apps/*']\n")
    (app / "apps/api/src/main.ts").write_text("1\n")
    for name in migrations:
        (app / "apps/api/prisma/migrations" / name).mkdir(parents=True, exist_ok=True)
        (app / "apps/api/prisma/migrations" / name / "migration.sql").write_text("SELECT 1;\n")
    (app / "apps/api/prisma/migrations/migration_lock.toml").write_text('provider = "postgresql"\n')
    return app


def test_a_built_release_reads_its_head_and_new_migrations_from_the_checkout(tmp_path: Path) -> None:
    app = _checkout(tmp_path, ["001_add_tag", "000_init", "002_drop_title"])
    d = run_program("dev", overrides={"app.source": str(app), "releases": [R1], "release.backwardCompatible": True})
    current = reveal(d.outputs)["releases"]["history"][-1]
    assert current["name"].startswith("src-") and current["migrationHead"] == "002_drop_title"
    # Over r1 (head 000_init), in Prisma's order (by name), not the directory listing's.
    assert current["newMigrations"] == ["001_add_tag", "002_drop_title"] and current["backwardCompatible"] is True
    assert current["images"]["api"].startswith("aixsss-dev/aixsss-api:src-")


# ------------------------------------------------------------------------------ the policy pack

NO_MIGRATIONS = next(r for r in STACK_RULES if r.name == "rollback-runs-no-migrations")


def _stack_rule(d: Deployment, regs: list[Any] | None = None) -> list[str]:
    return [m for name, m in stack_violations(d, regs) if name == NO_MIGRATIONS.name]


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_the_policy_refuses_a_rollback_that_runs_migrations(target: str) -> None:
    history = {**GIVEN, **CURRENT, "releases": [R1, R2_SAFE, R3], "target": target}
    current = run_program("dev", overrides=history)
    rolled = run_program("dev", overrides={**history, "release.rollbackTo": "r1"})
    assert _stack_rule(current) == [] and _stack_rule(rolled) == []
    # The rollback's resources plus the migration job of the release it rolls back from.
    jobs = [r for r in current.registrations if r.name in _migration_jobs(current)]
    assert jobs
    found = _stack_rule(rolled, [*rolled.registrations, *jobs])
    assert found and all(f"rollback to r1 declares the migration job {jobs[0].name}" in m for m in found[:1]), found
    # An api without its record cannot be judged: refused too.
    holder = "api-config" if target == "docker" else "api-files"
    without = [r for r in current.registrations if r.name != holder]
    assert _stack_rule(current, without) == [
        "the api carries no release record (/etc/aixsss/release.json): no rollback can be judged"
    ]


@pytest.mark.parametrize("target", ["docker", "kubernetes"])
def test_the_policy_refuses_a_rollback_record_across_an_incompatible_migration(target: str) -> None:
    history = {**GIVEN, **CURRENT, "releases": [R1, R2_SAFE, R3], "target": target}
    rolled = run_program("dev", overrides={**history, "release.rollbackTo": "r1"})
    holder = rolled.named("api-config", CONTAINER) if target == "docker" else rolled.named("api-files", CONFIG_MAP)
    rule = "rollback-crosses-compatible-migrations"
    assert rule in RULE and violations(rule, args_of(holder)) == []  # the allowed rollback passes
    # What the config refuses, had it been bypassed: r2 not declared compatible.
    props = copy.deepcopy(reveal(holder.inputs))
    files = props["uploads"] if target == "docker" else [props["data"]]
    if target == "docker":
        upload = next(u for u in files if u["file"].endswith("release.json"))
        record = json.loads(upload["content"])
        record["appliedSince"][0]["backwardCompatible"] = False
        upload["content"] = json.dumps(record)
    else:
        record = json.loads(props["data"]["etc_aixsss_release.json"])
        record["appliedSince"][0]["backwardCompatible"] = False
        props["data"]["etc_aixsss_release.json"] = json.dumps(record)
    assert violations(rule, args_of(holder, props)) == [
        "rollback to r1 (migration head 000_init): release r2 applied migration 001_add_tag, not declared backward "
        "compatible. Restore the database from a backup taken before it, or roll forward"
    ]


# ------------------------------------------------------------------------------ make release / rollback

FAKE_PULUMI = '''#!{python}
"""A stand-in for the Pulumi CLI: logs its arguments; `stack output` prints $FAKE_OUTPUT; `config
set [--path]` and `config rm` edit Pulumi.<stack>.yaml in the working directory."""
import os, re, sys
import yaml
args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:2] == ["stack", "output"]:
    print(open(os.environ["FAKE_OUTPUT"]).read())
    sys.exit(0)
stack = args[args.index("--stack") + 1]
words = [a for i, a in enumerate(args) if a not in ("--stack", "--path") and args[i - 1] != "--stack"]
path = f"Pulumi.{{stack}}.yaml"
doc = yaml.safe_load(open(path))
config = doc.setdefault("config", {{}})
if words[:2] == ["config", "set"]:
    key, value = words[2], words[3]
    indexed = re.fullmatch(r"(.+)\\[(\\d+)\\]", key)
    if indexed:
        items = config.setdefault(indexed.group(1), [])
        index = int(indexed.group(2))
        assert index <= len(items), "pulumi extends a list by one at most"
        items[index:index + 1] = [value]
    else:
        config[key] = value
elif words[:2] == ["config", "rm"]:
    config.pop(words[2], None)
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
'''


class Project:
    """A copy of the project's Pulumi.yaml and one stack file, and the fake CLI that edits it."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.dir = tmp / "project"
        self.dir.mkdir()
        shutil.copy(ROOT / "Pulumi.yaml", self.dir / "Pulumi.yaml")
        self.file = self.dir / "Pulumi.staging.yaml"
        self.file.write_text(yaml.safe_dump({"config": {f"aixsss:{k}": v for k, v in config.items()}}))
        self.fake = tmp / "pulumi"
        self.fake.write_text(FAKE_PULUMI.format(python=sys.executable))
        self.fake.chmod(0o755)
        self.log = tmp / "pulumi.log"
        self.log.write_text("")
        self.output = tmp / "output.json"

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PULUMI": str(self.fake),
            "FAKE_PULUMI_LOG": str(self.log),
            "FAKE_OUTPUT": str(self.output),
        }
        command = [sys.executable, str(ROOT / "scripts/releases.py"), *args, "--stack", "staging"]
        return subprocess.run(
            [*command, "--project-dir", str(self.dir)], env=env, capture_output=True, text=True, timeout=120
        )

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load(self.file.read_text())["config"]


STAGING = {k: v for k, v in {**GIVEN, **CURRENT}.items()}


def test_make_rollback_refused_changes_nothing_and_names_the_migration(tmp_path: Path) -> None:
    project = Project(tmp_path, {**STAGING, "releases": [R1, R2_UNSAFE, R3]})
    before = project.file.read_text()
    done = project.script("rollback", "--to", "r1")
    assert done.returncode == 1
    assert "rollback refused: invalid config for stack staging (1 problem; nothing was changed)" in done.stderr
    assert "release r2 applied migration 001_add_tag" in done.stderr and "roll forward" in done.stderr
    assert project.calls == [] and project.file.read_text() == before


def test_make_rollback_sets_the_release_and_the_program_deploys_it(tmp_path: Path) -> None:
    project = Project(tmp_path, {**STAGING, "releases": [R1, R2_SAFE, R3]})
    done = project.script("rollback", "--to", "r1")
    assert done.returncode == 0, done.stderr
    assert project.calls == ["config set --stack staging aixsss:release.rollbackTo r1"]
    assert project.config["aixsss:release.rollbackTo"] == "r1"
    # The stack file as the CLI left it, evaluated by the program.
    d = run_program("staging", project_dir=project.dir)
    assert reveal(d.outputs)["releases"]["deployed"] == "r1" and _migration_jobs(d) == []
    # TO= (empty): back to the configured release.
    assert project.script("rollback", "--to", "").returncode == 0
    assert project.calls[-1] == "config rm --stack staging aixsss:release.rollbackTo"
    assert "aixsss:release.rollbackTo" not in project.config


def test_make_release_records_the_deploy_from_the_output(tmp_path: Path) -> None:
    config = {**STAGING, "release.name": "r4", "release.backwardCompatible": True, "releases": [R1, R3]}
    project = Project(tmp_path, config)
    deployed = run_program("staging", project_dir=project.dir)
    project.output.write_text(json.dumps(reveal(deployed.outputs)["releases"]))
    done = project.script("record")
    assert done.returncode == 0, done.stderr
    recorded = project.config["aixsss:releases"]
    assert recorded[:2] == [R1, R3]
    assert recorded[2] == line("r4", "002_drop_title", "3.0.0", compatible=True)
    # The declaration was r4's: the next release is not compatible unless declared again.
    assert "aixsss:release.backwardCompatible" not in project.config
    assert project.calls[-2:] == [
        f"config set --stack staging --path aixsss:releases[2] {recorded[2]}",
        "config rm --stack staging aixsss:release.backwardCompatible",
    ]
    # Recording again adds nothing.
    assert project.script("record").returncode == 0 and len(project.config["aixsss:releases"]) == 3


def test_make_release_keeps_the_newest_releases(tmp_path: Path) -> None:
    lines = [line(f"r{i}", f"{i:03d}_m", f"{i}.0.0") for i in range(MAX_RELEASES)]
    project = Project(tmp_path, {**STAGING, **LATEST, "releases": lines})
    project.output.write_text(json.dumps(reveal(run_program("staging", project_dir=project.dir).outputs)["releases"]))
    assert project.script("record").returncode == 0
    recorded = project.config["aixsss:releases"]
    assert len(recorded) == MAX_RELEASES and recorded[0] == lines[1] and recorded[-1].startswith("name=r99 ")


def test_make_release_refuses_a_deploy_without_a_migration_head(tmp_path: Path) -> None:
    project = Project(tmp_path, {k: v for k, v in STAGING.items() if k != "release.migrationHead"})
    project.output.write_text(json.dumps(reveal(run_program("staging", project_dir=project.dir).outputs)["releases"]))
    done = project.script("record")
    assert done.returncode == 1 and "has no migration head: declare the newest migration" in done.stderr
    assert project.calls == ["stack output --stack staging --json releases"]


def test_the_makefile_runs_the_script_then_up(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "rollback", "STACK=prod", "TO=r7", "PULUMI=pulumi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [x for x in done.stdout.splitlines() if "releases.py" in x or x.startswith("make") or "up" in x]
    script = next(i for i, x in enumerate(lines) if "scripts/releases.py rollback --stack prod --to 'r7'" in x)
    assert any("up STACK=prod" in x for x in lines[script + 1 :]), done.stdout

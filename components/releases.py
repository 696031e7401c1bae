"""The release a deploy records, and a rollback's: what the api declares in its release record
and what the `releases` stack output shows.

Pulumi keeps no release history, so the stack file does (``aixsss:releases``,
components/config/releases.py): `make release` appends what a deploy exported, `make rollback`
names an entry to run again. A rollback deploys that entry's images and no migration job: the
schema stays at the newer head, which is why the config model (ReleaseSettings) refuses one
across migrations not declared backward compatible. The api carries the record as
``/etc/aixsss/release.json`` (a Docker config carrier's upload, a ConfigMap key on Kubernetes),
so the policy pack (rollback-crosses-compatible-migrations, rollback-runs-no-migrations)
judges what is deployed, not the config.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components.config import PROJECT, Problem, StackConfig, StackConfigError, format_problems
from components.config.releases import MAX_RELEASES, Release, Step, applied_since, is_migration_name, older_head

# Where Prisma keeps the api's migrations in the application's checkout (APP.md); it applies
# them in the order of their directory names.
MIGRATIONS_DIR = Path("apps/api/prisma/migrations")
RECORD_FILE = "release.json"


def migration_names(source: Path) -> tuple[str, ...]:
    """The checkout's migrations in the order Prisma applies them: directories holding a
    migration.sql, by name."""
    root = source / MIGRATIONS_DIR
    if not root.is_dir():
        return ()
    names = (d.name for d in root.iterdir() if (d / "migration.sql").is_file())
    return tuple(sorted(n for n in names if is_migration_name(n)))


@dataclass(frozen=True)
class ReleasePlan:
    name: str
    # The newest migration the deployed api image carries ("" when not known: given images
    # without release.migrationHead).
    migration_head: str
    # The newest migration applied to the database: the head, or on a rollback the newer one.
    schema_head: str
    backward_compatible: bool
    new_migrations: tuple[str, ...] = ()
    # On a rollback: the newest recorded release, and the releases applied since the target.
    rollback_from: str | None = None
    applied_since: tuple[Step, ...] = field(default=())

    @property
    def runs_migrations(self) -> bool:
        return self.rollback_from is None

    def record(self) -> str:
        """The api's release record: plain JSON, known at preview (no image reference in it,
        so recording history alone restarts nothing)."""
        return json.dumps(
            {
                "release": self.name,
                "migrationHead": self.migration_head,
                "schemaHead": self.schema_head,
                "runsMigrations": self.runs_migrations,
                "rollbackFrom": self.rollback_from,
                "appliedSince": [s.describe() for s in self.applied_since],
            },
            indent=2,
            sort_keys=True,
        )


def _derived_name(config: StackConfig, api_version: str) -> str:
    if config.app.source:
        return api_version  # src-<hash of the source>: one per source
    refs = "\n".join(getattr(config.images, n) for n in ("api", "worker", "web"))
    return "r-" + hashlib.sha256(refs.encode()).hexdigest()[:12]


def plan(config: StackConfig, api_version: str, migrations: tuple[str, ...]) -> ReleasePlan:
    """What this deploy is: the configured release, or a rollback to a recorded one. The config
    model has already refused a rollback it must not make."""
    history = config.history
    if config.release.rollback_to:
        target = next(r for r in history if r.name == config.release.rollback_to)
        steps = tuple(applied_since(history, target.name))
        return ReleasePlan(
            name=target.name,
            migration_head=target.migration_head,
            schema_head=steps[-1].release.migration_head if steps else target.migration_head,
            backward_compatible=target.backward_compatible,
            new_migrations=target.new_migrations,
            rollback_from=history[-1].name,
            applied_since=steps,
        )
    name = config.release.name or _derived_name(config, api_version)
    head = migrations[-1] if migrations else config.release.migration_head
    disguised = older_head(head, history) if migrations else None  # given heads: the config model
    if disguised:
        # Built from app.source: only the program reads the checkout's migrations.
        allowed = f"a checkout whose newest migration ({head}) is {disguised}"
        problem = Problem(f"{PROJECT}:app.source", repr(config.app.source), allowed)
        raise StackConfigError(format_problems([problem], pulumi.get_stack()))
    previous = next((r for r in reversed(history) if r.name != name), None)
    new: tuple[str, ...] = ()
    if previous is not None and migrations and head != previous.migration_head:
        new = tuple(m for m in migrations if m > previous.migration_head)
    return ReleasePlan(
        name=name,
        migration_head=head,
        schema_head=head,
        backward_compatible=config.release.backward_compatible,
        new_migrations=new,
    )


def output(config: StackConfig, release: ReleasePlan, images: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
    """The `releases` stack output: what runs, and the history (bounded) with this deploy last.
    `make release` writes the last entry back into the stack file."""
    history: list[dict[str, Any]] = [r.describe() for r in config.history]
    if release.runs_migrations and release.name not in {r.name for r in config.history}:
        current = Release(
            name=release.name,
            images={},
            migration_head=release.migration_head,
            backward_compatible=release.backward_compatible,
            new_migrations=release.new_migrations,
        ).describe()
        history.append({**current, "images": images})
    return {
        "deployed": release.name,
        "rollbackFrom": release.rollback_from,
        "migrationHead": release.migration_head,
        "schemaHead": release.schema_head,
        "migrationJob": release.runs_migrations,
        "appliedSince": [s.describe() for s in release.applied_since],
        "history": history[-MAX_RELEASES:],
        "kept": MAX_RELEASES,
    }

"""Releases as data: the history a stack file keeps in ``aixsss:releases``, and what a rollback
across it may do.

Pulumi.yaml types config only as scalars and arrays of them, so each release is one string of
``key=value`` words, one line per release in the stack file (reviewable, diffable)::

    name=r2 head=20260211211000_add_ai_profile_video_api_key compatible=false
      new=20260211162000_add_ai_profile_image_api_key,20260211211000_add_ai_profile_video_api_key
      api=registry.example.com/aixsss/aixsss-api@sha256:… worker=… web=…

``head`` is the newest migration the release's image carries (Prisma applies
``apps/api/prisma/migrations/*`` in name order), ``new`` the migrations it added over the
release before it (known when the program built the image; else only the head is named), and
``compatible`` whether the old images still run on the schema those migrations leave: declared
by whoever ships the release, ``false`` unless said otherwise. No import from the model: it
builds its rules on these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# The history the stack file keeps, oldest first: `make release` drops the oldest beyond it, the
# config refuses more. Twenty deploys back is further than a rollback should reach.
MAX_RELEASES = 20
APP_IMAGE_NAMES = ("api", "worker", "web")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
NAME_RULE = "a release name: at most 63 of a-z, 0-9, '.' and '-', starting and ending alphanumeric (e.g. r12)"
# A Prisma migration is a directory name; the CLI makes `<YYYYMMDDHHMMSS>_<name>`.
_MIGRATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
MIGRATION_RULE = "a migration directory name such as 20260211211000_add_ai_profile_video_api_key"
_BOOLEANS = {"true": True, "false": False}
_KEYS = ("name", "head", "compatible", "new", *APP_IMAGE_NAMES)


def is_release_name(value: str) -> bool:
    return bool(_NAME.match(value))


def is_migration_name(value: str) -> bool:
    return bool(_MIGRATION.match(value))


@dataclass(frozen=True)
class Release:
    name: str
    images: dict[str, str]
    migration_head: str
    backward_compatible: bool = False
    # The migrations this release added over the one before it, in order (may be unknown: empty).
    new_migrations: tuple[str, ...] = field(default=())

    def line(self) -> str:
        words = [f"name={self.name}", f"head={self.migration_head}"]
        words.append(f"compatible={'true' if self.backward_compatible else 'false'}")
        if self.new_migrations:
            words.append("new=" + ",".join(self.new_migrations))
        words += [f"{n}={self.images[n]}" for n in APP_IMAGE_NAMES]
        return " ".join(words)

    def describe(self) -> dict[str, object]:
        """The release as the `releases` stack output shows it."""
        return {
            "name": self.name,
            "images": dict(self.images),
            "migrationHead": self.migration_head,
            "newMigrations": list(self.new_migrations),
            "backwardCompatible": self.backward_compatible,
        }


def parse_release(line: str) -> Release:
    """One history line; ValueError naming every problem in it."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for word in line.split():
        key, sep, value = word.partition("=")
        if not sep or key not in _KEYS:
            problems.append(f"{word!r} is not one of {', '.join(k + '=' for k in _KEYS)}")
        elif key in values:
            problems.append(f"{key}= given twice")
        else:
            values[key] = value
    for key in ("name", "head", *APP_IMAGE_NAMES):
        if not values.get(key):
            problems.append(f"{key}= missing")
    if values.get("name") and not is_release_name(values["name"]):
        problems.append(f"name: {NAME_RULE}")
    new = tuple(m for m in values.get("new", "").split(",") if m)
    for migration in (values.get("head"), *new):
        if migration and not is_migration_name(migration):
            problems.append(f"{migration!r}: {MIGRATION_RULE}")
    if new and values.get("head") and new[-1] != values["head"]:
        problems.append("new= must end with the head (the newest migration)")
    compatible = values.get("compatible", "false")
    if compatible not in _BOOLEANS:
        problems.append("compatible= is true or false")
    if problems:
        raise ValueError("; ".join(problems))
    return Release(
        name=values["name"],
        images={n: values[n] for n in APP_IMAGE_NAMES},
        migration_head=values["head"],
        backward_compatible=_BOOLEANS[compatible],
        new_migrations=new,
    )


def parse_history(lines: Iterable[str]) -> list[Release]:
    """Every line of ``aixsss:releases``; one ValueError naming every bad entry (by index, as
    `pulumi config set --path 'aixsss:releases[i]'` addresses it)."""
    lines = list(lines)
    releases: list[Release] = []
    problems: list[str] = []
    for index, line in enumerate(lines):
        try:
            release = parse_release(str(line))
        except ValueError as exc:
            problems.append(f"releases[{index}]: {exc}")
            continue
        if any(r.name == release.name for r in releases):
            problems.append(f"releases[{index}]: the name {release.name} is taken by an earlier entry")
        releases.append(release)
    if len(lines) > MAX_RELEASES:
        problems.append(
            f"at most {MAX_RELEASES} releases (found {len(lines)}): drop the oldest (`make release` keeps the "
            f"newest {MAX_RELEASES})"
        )
    if problems:
        raise ValueError("; ".join(problems))
    return releases


@dataclass(frozen=True)
class Step:
    """A release applied after the rollback's target that moved the schema forward."""

    release: Release
    # Its migrations: the ones it declared as new, or its head alone when they are unknown.
    migrations: tuple[str, ...]

    def describe(self) -> dict[str, object]:
        return {
            "release": self.release.name,
            "migrations": list(self.migrations),
            "head": self.release.migration_head,
            "backwardCompatible": self.release.backward_compatible,
        }


def applied_since(history: list[Release], target: str) -> list[Step]:
    """The releases after ``target`` in the history whose head differs from the one before
    them: the schema moved with them, and the rollback's images must still run on it."""
    names = [r.name for r in history]
    if target not in names:
        return []
    steps = []
    previous = history[names.index(target)]
    for release in history[names.index(target) + 1 :]:
        if release.migration_head != previous.migration_head:
            steps.append(Step(release, release.new_migrations or (release.migration_head,)))
        previous = release
    return steps


def blocking_step(steps: list[Step]) -> Step | None:
    """The first step whose migrations are not declared backward compatible."""
    return next((s for s in steps if not s.release.backward_compatible), None)


def schema_head(history: list[Release]) -> Release | None:
    """The recorded release with the newest head (Prisma's order is the names' order)."""
    return max(history, key=lambda r: r.migration_head, default=None)


def older_head(head: str, history: list[Release]) -> str | None:
    """Why deploying images whose newest migration is ``head`` is a rollback in disguise (the
    database already has newer migrations), or None."""
    newest = schema_head(history)
    if not head or newest is None or head >= newest.migration_head:
        return None
    return (
        f"at least {newest.migration_head} (recorded by {newest.name}): the database has migrations this "
        "image does not know, so this deploy is a rollback; deploy an earlier release with release.rollbackTo "
        "(make rollback), which is judged and runs no migration job, or roll forward"
    )


def refusal(target: Release, step: Step) -> str:
    """Why a rollback to ``target`` is refused, and what to do instead."""
    first = step.migrations[0]
    count = len(step.migrations)
    more = f" (the first of {count}, up to {step.release.migration_head})" if count > 1 else ""
    return (
        f"no rollback to {target.name} (its images expect migration {target.migration_head}): release "
        f"{step.release.name} applied migration {first}{more}, not declared backward compatible "
        f"(compatible=false in its aixsss:releases entry), and migrations are never undone. Restore the "
        f"database from a backup taken before {step.release.name} (README: Releases and rollback, and the "
        "restore drill), or roll forward: fix it in a new release on top of the current schema"
    )

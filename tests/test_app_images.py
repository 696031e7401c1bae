"""Where the application's images come from: built from app.source (pulumi-docker Image), or given."""

from __future__ import annotations

from pathlib import Path

from harness import reveal, run_program

IMAGE = "docker:index/image:Image"
CONTAINER = "docker:index/container:Container"


def checkout(root: Path, content: str = "console.log('v1')\n") -> Path:
    app = root / "aixsss"
    (app / "apps/api/src").mkdir(parents=True, exist_ok=True)
    (app / "pnpm-workspace.yaml").write_text("packages: ['apps/*', 'packages/*']\n")
    (app / "apps/api/src/main.ts").write_text(content)
    # Not part of what is built: a dependency tree and a build output.
    (app / "node_modules/x").mkdir(parents=True, exist_ok=True)
    (app / "node_modules/x/index.js").write_text("1")
    return app


def builds(d) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The app's builds (Docker also builds PostgreSQL with pgBackRest: tests/test_backups.py)."""
    return {r.name.removesuffix("-build"): reveal(r.inputs) for r in d.of_type(IMAGE) if r.name != "postgres-build"}


def test_docker_builds_the_three_targets_on_its_host_by_source_tag(tmp_path: Path) -> None:
    app = checkout(tmp_path)
    d = run_program("dev", overrides={"app.source": str(app)})
    built = builds(d)
    assert set(built) == {"api", "worker", "web"}
    tags = set()
    for name, args in built.items():
        assert args["build"]["target"] == name and args["build"]["context"] == str(app)
        assert args["build"]["dockerfile"].endswith("images/app/Dockerfile")
        assert args["skipPush"] is True  # built where it runs; no registry involved
        assert args["build"]["platform"] == "linux/amd64"  # the host's, not the machine running Pulumi
        repository, tag = args["imageName"].rsplit(":", 1)
        assert repository == f"aixsss-dev/aixsss-{name}" and tag.startswith("src-")
        tags.add(tag)
    assert len(tags) == 1  # one source, one version
    # The containers run what was built: the pulled reference is the built tag.
    pulled = {r.name: reveal(r.inputs)["name"] for r in d.of_type("docker:index/remoteImage:RemoteImage")}
    assert pulled["api-image"] == built["api"]["imageName"] and pulled["web-image"] == built["web"]["imageName"]
    origins = reveal(d.outputs)["imageOrigins"]
    assert origins["api"].startswith(f"built from {app} (src-") and origins["api"].endswith("target api")


def test_a_source_change_is_a_new_tag_and_a_new_migration_release(tmp_path: Path) -> None:
    app = checkout(tmp_path)
    (app / "docs").mkdir()
    (app / "docs/notes.md").write_text("v1")

    def version_and_job() -> tuple[str, str]:
        d = run_program("dev", overrides={"app.source": str(app)})
        job = next(c.name for c in d.of_type(CONTAINER) if c.name.startswith("api-migrate-") and "config" not in c.name)
        return builds(d)["api"]["imageName"], job

    first = version_and_job()
    (app / "node_modules/x/index.js").write_text("2")  # not built: same version
    (app / "docs/notes.md").write_text("v2")  # not copied by the Dockerfile: same version
    assert version_and_job() == first
    (app / "apps/api/src/main.ts").write_text("console.log('v2')\n")
    second = version_and_job()
    assert second[0] != first[0] and second[1] != first[1]


def test_kubernetes_pushes_and_deploys_by_digest(tmp_path: Path) -> None:
    app = checkout(tmp_path)
    overrides = {"app.source": str(app), "app.registry": "registry.example.com/team", "app.platform": "linux/arm64"}
    d = run_program("staging", overrides=overrides)
    built = builds(d)
    for name, args in built.items():
        assert args["skipPush"] is False and args["build"]["platform"] == "linux/arm64"
        assert args["imageName"].startswith(f"registry.example.com/team/aixsss-{name}:src-")
    images = reveal(d.outputs)["images"]
    for name in ("api", "api-migrate", "worker", "web"):
        repository, _, digest = images[name].partition("@sha256:")
        assert repository.startswith("registry.example.com/team/aixsss-") and len(digest) == 64, images[name]

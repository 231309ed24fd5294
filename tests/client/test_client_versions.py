"""gan-client and model versions: a job pins the version it started on, so a resumed job never
mixes versions, even when the server's default moves on; a version asked for is named; the
versions command shows what is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.swap_bench import publish
from client.errors import ApiError
from client.runner import JobError
from client.versions import served_version, split_ref, version_gone
from tests.client.test_cli import files_under, gan_client, manifest
from tests.live_server import start_server

ADMIN = {"X-API-Key": "admin-key-for-the-client-tests"}


def entry(name: str, version: int, default: bool, task: str = "generate") -> dict[str, Any]:
    return {"name": name, "version": version, "default": default, "task": task}


def test_the_version_a_job_uses() -> None:
    models = [entry("b", 1, False), entry("b", 2, True), entry("a", 4, True), entry("up", 1, True, "upscale")]
    assert served_version(models, "generate", None, None)["name"] == "a"
    assert served_version(models, "generate", "b", None)["version"] == 2
    assert served_version(models, "generate", "b", 1)["version"] == 1
    old_server = [{"name": "b", "version": 3, "task": "generate"}]  # no "default" field
    assert served_version(old_server, "generate", "b", None)["version"] == 3
    with pytest.raises(JobError, match=r"b version 7 is not served \(loaded: 1, 2\)"):
        served_version(models, "generate", "b", 7)
    with pytest.raises(JobError, match="unknown generate model 'up'; served: a, b"):
        served_version(models, "generate", "up", None)
    assert split_ref("b@2") == ("b", 2) and split_ref("b") == ("b", None)
    # A job stops when its pinned version goes away mid-run; other errors stay per item.
    missing = ApiError(404, "unknown_model", "model 'b' has no version 2 loaded; loaded: 3")
    assert "b version 2 is no longer served" in str(version_gone(missing, "b@2"))
    assert version_gone(missing, "b") is None  # unpinned: the server's default, nothing was pinned
    assert version_gone(ApiError(400, "invalid_request", "bad"), "b@2") is None
    with pytest.raises(JobError, match="positive integer"):
        split_ref("b@two")


def test_a_resumed_job_stays_on_its_version_while_the_default_moves_on(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish(repo, 1)
    srv = start_server(
        tmp_path, repo, repository_poll_s=0, version_policy="latest:2", admin_keys=ADMIN["X-API-Key"]
    )
    try:
        out = tmp_path / "job"
        first = gan_client(
            "generate", "--model", "digits", "--n", "6", "--seed", "10", "--out", str(out), url=srv.url
        )
        assert first.returncode == 0, first.stderr
        assert json.loads((out / "job.json").read_text())["version"] == 1
        made = files_under(out)

        publish(repo, 2)  # another generator's files: version 2 becomes the default
        httpx.post(f"{srv.url}/v1/repository/sync", headers=ADMIN).raise_for_status()
        for name in ("seed11.png", "seed14.png"):  # as if the job had been stopped before these
            (out / name).unlink()
        again = gan_client("generate", "--model", "digits", "--n", "6", "--out", str(out), url=srv.url)
        assert again.returncode == 0, again.stderr
        assert "done 2, skipped 4" in again.stdout
        assert files_under(out) == made  # version 1's images, byte for byte
        assert {e["version"] for e in manifest(out)} == {1}

        fresh = tmp_path / "fresh"
        run = gan_client(
            "generate", "--model", "digits", "--n", "2", "--seed", "10", "--out", str(fresh), url=srv.url
        )
        assert run.returncode == 0 and {e["version"] for e in manifest(fresh)} == {2}
        pinned = tmp_path / "pinned"
        run = gan_client(
            "generate", "--model", "digits@1", "--n", "2", "--seed", "10", "--out", str(pinned), url=srv.url
        )
        assert run.returncode == 0 and (pinned / "seed10.png").read_bytes() == made["seed10.png"]
        # The job's folder holds version 1's work: asking it for version 2 is refused.
        other = gan_client("generate", "--model", "digits@2", "--n", "6", "--out", str(out), url=srv.url)
        assert other.returncode == 2 and "version: 1 there, 2 now" in other.stderr

        listing = gan_client("versions", url=srv.url)
        assert "digits: loaded 1, 2* (policy latest:2, published 1, 2)" in listing.stdout

        # Version 1 unloaded: the job cannot go on without mixing, and says what to do.
        httpx.post(
            f"{srv.url}/v1/models/digits/unload", json={"version": 1}, headers=ADMIN
        ).raise_for_status()
        (out / "seed12.png").unlink()
        stopped = gan_client("generate", "--model", "digits", "--n", "6", "--out", str(out), url=srv.url)
        assert stopped.returncode == 2
        assert (
            "digits version 1 is not served (loaded: 2)" in stopped.stderr
            and "/v1/models/digits/load" in stopped.stderr
        )
    finally:
        srv.stop()

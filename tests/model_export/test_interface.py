"""gan-export refuses a version whose interface differs from the newest published version of its
name (the fields a client depends on), before any work and leaving the repository as it was,
unless --new-interface says so; a version like the newest publishes as before; --replace holds a
rebuilt version to the other versions, not to itself. Checkpoints and models made elsewhere alike."""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from model_export.cli import main
from model_export.export import ExportResult
from model_repository.interface import interface, interface_changes
from model_repository.manifest import dump_manifest
from model_repository.repository import list_versions, read_version
from tests.model_export.test_cli import gan_export

REPO = Path(__file__).resolve().parents[2]


def snapshot(repo: Path) -> dict[str, bytes | None]:
    """Every entry under `repo`, hidden ones too: a file's bytes, a directory as None."""
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(repo):
        for d in dirs:
            found[os.path.relpath(os.path.join(root, d), repo)] = None
        for f in files:
            found[os.path.relpath(os.path.join(root, f), repo)] = Path(root, f).read_bytes()
    return found


def place(result: ExportResult, repo: Path, name: str, version: int = 1) -> None:
    """An exported version copied into `repo` as NAME/VERSION (its manifest saying so)."""
    target = repo / name / str(version)
    shutil.copytree(result.directory, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["name"], manifest["version"] = name, version
    (target / "manifest.json").write_text(dump_manifest(manifest))


def refusal(stderr: str) -> tuple[str, list[str]]:
    """The one error line and the fields it names, in order."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gan-export: error: "), stderr
    listed = re.search(r"'s in .*?: (.*); requests that name no version", lines[0])
    assert listed is not None, lines[0]
    return lines[0], re.findall(r"(?:^|, )([a-z_]+) ", listed[1])


def test_a_different_interface_is_refused_and_the_repository_left_as_it_was(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    place(exported["dcgan-conditional"], repo, "my-gan")
    before = snapshot(repo)
    result = gan_export(
        str(generator_files["dcgan-transposed"]), "--repo", str(repo), "--name", "my-gan", "--no-card"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line, fields = refusal(result.stderr)
    assert fields == ["classes", "class_names", "channels", "resolution"]
    assert (
        f"my-gan version 2's interface differs from version 1's in {repo}: classes 4 -> 0, "
        'class_names ["0","1","2","3"] -> [], channels 3 -> 1, resolution [8,8] -> [16,16]; '
        "requests that name no version get the newest, so publish it under another --name, or pass "
        "--new-interface if my-gan is meant to change"
    ) in line
    assert result.stdout == ""
    assert snapshot(repo) == before  # nothing written, not even a staging directory

    allowed = gan_export(
        str(generator_files["dcgan-transposed"]),
        *("--repo", str(repo), "--name", "my-gan", "--no-card", "--new-interface"),
    )
    assert allowed.returncode == 0, allowed.stderr
    assert list_versions(repo, "my-gan") == [1, 2]
    assert interface(read_version(repo, "my-gan", 2))["classes"] == 0


def test_the_same_interface_needs_no_flag_and_is_what_was_compared(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], tmp_path: Path
) -> None:
    """Other weights (another seed), the same interface: the next version, without a word. The
    interface compared before the export is the published manifest's."""
    repo = tmp_path / "models"
    place(exported["style-conditional"], repo, "g")
    assert (
        main([str(generator_files["style-conditional"]), "--repo", str(repo), "--name", "g", "--no-card"])
        == 0
    )
    assert list_versions(repo, "g") == [1, 2]
    published = [interface(read_version(repo, "g", v)) for v in (1, 2)]
    assert published[0] == published[1] and published[1]["style"] is True


# (published, then exported with these extra flags) -> the fields the refusal names, old -> new
CASES = [
    (
        "dcgan-transposed",
        "style-8px",
        [],
        [
            "resolution [16,16] -> [8,8]",
            "latent_size 8 -> 4",
            "style false -> true",
            "w_dim null -> 8",
            "num_ws null -> ",
            "style_layers null -> {",
        ],
    ),
    (
        "mlp-conditional",
        "style-conditional",
        [],
        [
            'class_names ["cat","dog","owl"] -> ["a","b","c"]',
            "channels 1 -> 3",
            "resolution [8,8] -> [16,16]",
            "style false -> true",
            "w_dim null -> 16",
            "num_ws null -> ",
            "style_layers null -> {",
        ],
    ),
    ("srresnet-x2", "srresnet-x4", [], ["scale 2 -> 4"]),
    (
        "srresnet-x2",
        "srresnet-x2",
        ["--family", "photo-x2"],
        ['family null -> {"name":"photo-x2","role":"faithful"}'],
    ),
    (
        "dcgan-transposed",
        "srresnet-x2",
        [],
        [
            'task "generate" -> "upscale"',
            "classes 0 -> null",
            "class_names [] -> null",
            "channels 1 -> 3",
            "resolution [16,16] -> null",
            "latent_size 8 -> null",
            "scale null -> 2",
            "style false -> null",
        ],
    ),
]


@pytest.mark.parametrize(("old", "new", "flags", "named"), CASES, ids=[f"{c[0]}-to-{c[1]}" for c in CASES])
def test_each_differing_field_is_named_with_both_values(
    exported: dict[str, ExportResult],
    generator_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    flags: list[str],
    named: list[str],
) -> None:
    repo = tmp_path / "models"
    place(exported[old], repo, "m")
    before = snapshot(repo)
    assert main([str(generator_files[new]), "--repo", str(repo), "--name", "m", *flags]) == 2
    line, fields = refusal(capsys.readouterr().err)
    assert fields == [n.split(" ")[0] for n in named], line
    for text in named:
        assert f" {text}" in line, (text, line)
    assert snapshot(repo) == before


def test_every_interface_field_has_a_case() -> None:
    """The cases above, between them, name every field an interface has."""
    from model_repository.interface import FIELDS

    assert {text.split(" ")[0] for case in CASES for text in case[3]} == set(FIELDS)


def test_replace_compares_with_the_other_versions_not_itself(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    place(exported["srresnet-x2"], repo, "sr")
    x4 = str(generator_files["srresnet-x4"])
    # The only version, rebuilt as another model: nothing else to compare with (make models).
    assert main([x4, "--repo", str(repo), "--name", "sr", "--version", "1", "--replace", "--no-card"]) == 0
    assert interface(read_version(repo, "sr", 1))["scale"] == 4

    place(exported["srresnet-x4"], repo, "sr", 2)
    x2 = str(generator_files["srresnet-x2"])
    before = snapshot(repo)
    result = gan_export(x2, "--repo", str(repo), "--name", "sr", "--version", "1", "--replace", "--no-card")
    assert result.returncode == 2
    line, fields = refusal(result.stderr)
    assert fields == ["scale"] and "sr version 1's interface differs from version 2's" in line
    assert snapshot(repo) == before


def test_the_newest_version_is_the_one_compared(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], tmp_path: Path
) -> None:
    """Version 1 conditional, version 2 (published with the flag) not: a third like version 2
    passes; one like version 1 is refused, against version 2."""
    repo = tmp_path / "models"
    place(exported["dcgan-conditional"], repo, "g")
    place(exported["dcgan-transposed"], repo, "g", 2)
    assert (
        main([str(generator_files["dcgan-transposed"]), "--repo", str(repo), "--name", "g", "--no-card"]) == 0
    )
    result = gan_export(str(generator_files["dcgan-conditional"]), "--repo", str(repo), "--name", "g")
    assert result.returncode == 2 and "g version 4's interface differs from version 3's" in result.stderr


def test_an_unreadable_newest_manifest_is_refused_unless_told(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    place(exported["dcgan-transposed"], repo, "g")
    (repo / "g" / "1" / "manifest.json").write_text("{")
    result = gan_export(str(generator_files["dcgan-transposed"]), "--repo", str(repo), "--name", "g")
    assert result.returncode == 2
    assert "cannot compare the interface of g version 2 with version 1's" in result.stderr
    assert "pass --new-interface to publish it without comparing" in result.stderr
    assert list_versions(repo, "g") == [1]


# A generator made elsewhere: unconditional, 1 channel, 16x16, latent 8 (dcgan-transposed's
# interface), or RGB.
USER_NET = """
import torch
from torch import nn


class Gen(nn.Module):
    def __init__(self, channels: int = 1):
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(8, channels * 16 * 16)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, self.channels, 16, 16)
"""


def test_models_made_elsewhere_are_compared_too(
    exported: dict[str, ExportResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "interface_user_net.py").write_text(textwrap.dedent(USER_NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    from interface_user_net import Gen  # type: ignore[import-not-found]

    for channels in (1, 3):
        torch.jit.script(Gen(channels).eval()).save(str(tmp_path / f"g{channels}.ts.pt"))
    repo = tmp_path / "models"
    place(exported["dcgan-transposed"], repo, "g")
    declared = ["--task", "generate", "--latent-size", "8", "--output-range", "-1,1", "--no-card"]

    before = snapshot(repo)
    rgb = gan_export(str(tmp_path / "g3.ts.pt"), *declared, "--repo", str(repo), "--name", "g")
    assert rgb.returncode == 2
    assert refusal(rgb.stderr)[1] == ["channels"] and "channels 1 -> 3" in rgb.stderr
    assert snapshot(repo) == before

    gray = gan_export(str(tmp_path / "g1.ts.pt"), *declared, "--repo", str(repo), "--name", "g")
    assert gray.returncode == 0, gray.stderr
    assert read_version(repo, "g", 2)["source"]["format"] == "TorchScript file"


def test_interface_changes_of_the_bundled_models() -> None:
    """The comparison itself, on the manifests that ship: digits and digits-conditional differ
    only in their classes."""
    digits, conditional = (
        interface(read_version(REPO / "models", name, 1)) for name in ("digits", "digits-conditional")
    )
    assert interface_changes(digits, conditional) == [
        ("classes", 0, 10),
        ("class_names", [], [str(d) for d in range(10)]),
    ]
    assert interface_changes(conditional, conditional) == []

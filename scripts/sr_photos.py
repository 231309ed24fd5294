"""Rebuild the super-resolution photos (training/sr/photos/test/ and validation/) from the Debian
packages that hold the originals; what a maintainer ran once, kept so the sets can be checked and
remade.

    python scripts/sr_photos.py --out training/sr/photos

Needs `apt-get download` (a Debian 12 mirror) and `dpkg-deb`. Each original is checked against its
sha256, shrunk with MATLAB's bicubic (antialiased) so its shorter side is 540 pixels (which also
averages away the JPEG blocks of the large wallpapers), centre-cropped to 480x360 and written as
PNG. The centre crop is a rule fixed before any model saw the photos, so the set chose nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.sr.resize import imresize_uint8

SHORTER_SIDE = 540
CROP = (360, 480)  # height, width


@dataclass(frozen=True)
class Photo:
    split: str  # "test" or "validation": the subfolder it goes to
    name: str
    package: str
    version: str
    path: str
    sha256: str
    subject: str
    author: str
    licence: str


LOMIRI_16 = ("lomiri-wallpapers-16.04", "20.04.0-2")
LOMIRI_20 = ("lomiri-wallpapers-20.04", "20.04.0-2")
MATE = ("mate-backgrounds", "1.26.0-1")
JXL = ("libjxl-testdata", "0.0~git20230110.d6168ff-1")
WESATURATE = "/usr/share/libjxl-testdata/external/wesaturate/500px/"

PHOTOS = (
    Photo("test", "picosdeeuropa", *LOMIRI_16,
          "/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
          "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a",
          "mountains, rocks, meadow", "Aitzol Berasategi", "CC-BY-4.0"),
    Photo("test", "life", *LOMIRI_16, "/usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
          "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05",
          "forest stream, rocks", "Aitzol Berasategi", "CC-BY-4.0"),
    Photo("test", "aitzgorri", *LOMIRI_16, "/usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
          "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36",
          "mountain, autumn forest", "Aitzol Berasategi", "CC-BY-4.0"),
    Photo("test", "brushes", *LOMIRI_16, "/usr/share/backgrounds/Picture_1A_by_freespace.jpg",
          "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b",
          "paint brushes", 'Trevor "Freespace"', "CC-BY-4.0"),
    Photo("test", "fig", *LOMIRI_16, "/usr/share/backgrounds/Picture_0B_by_freespace.jpg",
          "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad",
          "a fig in a bowl on concrete", 'Trevor "Freespace"', "CC-BY-4.0"),
    Photo("test", "kleiber", *LOMIRI_20, "/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
          "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7",
          "a nuthatch on a tree trunk", "Lukas Baubkus", "CC-BY-SA-3.0"),
    Photo("test", "dune", *MATE, "/usr/share/backgrounds/mate/nature/Dune.jpg",
          "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91",
          "dune grass and sea", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    Photo("test", "blinds", *MATE, "/usr/share/backgrounds/mate/nature/Blinds.jpg",
          "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600",
          "a green leaf, close up", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    Photo("test", "flower", *JXL, "/usr/share/libjxl-testdata/jxl/flower/flower.png",
          "06fe0af7a5c790d2932a40e2d76b0d91aa6e73f3e55cc3f97ea6afae0133c2e7",
          "daisies", "JPEG XL Project Authors", "BSD-3-Clause"),
    Photo("test", "coast", *JXL, WESATURATE + "cvo9xd_keong_macan_srgb8.png",
          "f4e2d8da468a4f6bfd3a651a7f0a24c2b883e7f398b326c0e77a9dab42fb5322",
          "cliff, lake, mountains", "keong_macan (wesaturate.com)", "CC0-1.0"),
    Photo("test", "tulips", *JXL, WESATURATE + "tmshre_riaphotographs_srgb8.png",
          "b490de2143a336aff26a7ce4ee010f18dece53c3b0802cda76c1796daa5f32a0",
          "pink tulips", "riaphotographs (wesaturate.com)", "CC0-1.0"),
    Photo("test", "blossom", *JXL, WESATURATE + "u76c0g_bliznaca_srgb8.png",
          "9631423e430c1682fca3c2212adc6ae046df8839d22dfaa8b662761f34b6f711",
          "cherry blossom", "bliznaca (wesaturate.com)", "CC0-1.0"),
    # Validation photos of saturated colours, added after the test set showed a weakness there
    # (the three scikit-image validation images hold few): recipe choices about colour are made
    # on these, never on the test photos.
    Photo("validation", "freshflower", *MATE, "/usr/share/backgrounds/mate/nature/FreshFlower.jpg",
          "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e",
          "an orange flower, close up", "Jens Ansorg", "GPL-2+"),
    Photo("validation", "garden", *MATE, "/usr/share/backgrounds/mate/nature/Garden.jpg",
          "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78",
          "a red and yellow flower", "Charles Barbin", "GPL-2+"),
    Photo("validation", "greenmeadow", *MATE, "/usr/share/backgrounds/mate/nature/GreenMeadow.jpg",
          "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832",
          "blades of grass", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    Photo("validation", "raindrops", *MATE, "/usr/share/backgrounds/mate/nature/RainDrops.jpg",
          "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16",
          "raindrops on a leaf", '"blackcombwhistler07"', "GPL-2+"),
)  # fmt: skip


def extract(packages: set[tuple[str, str]], work: Path) -> Path:
    root = work / "root"
    for package, version in sorted(packages):
        subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=work, check=True)
        deb = next(work.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def prepare(original: Path) -> np.ndarray:
    with Image.open(original) as raw:
        image = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"), dtype=np.uint8)
    shorter = min(image.shape[:2])
    if shorter > SHORTER_SIDE:
        image = imresize_uint8(image, SHORTER_SIDE / shorter)
    h, w = image.shape[:2]
    top, left = (h - CROP[0]) // 2, (w - CROP[1]) // 2
    return image[top : top + CROP[0], left : left + CROP[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = extract({(p.package, p.version) for p in PHOTOS}, Path(tmp))
        for photo in PHOTOS:
            original = root / photo.path.lstrip("/")
            digest = hashlib.sha256(original.read_bytes()).hexdigest()
            if digest != photo.sha256:
                raise SystemExit(f"{photo.name}: {original} has sha256 {digest}, expected {photo.sha256}")
            folder = args.out / photo.split
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(prepare(original)).save(folder / f"{photo.name}.png", optimize=True)
            print(f"{photo.split}/{photo.name}.png  <- {photo.package} {photo.version} {photo.path}")


if __name__ == "__main__":
    main()

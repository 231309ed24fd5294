"""gan-client's command line: every command's arguments and their help (build_parser); what
each command does is client.cli's."""

from __future__ import annotations

import argparse
from pathlib import Path

from client.core import API_KEY_ENV, DEFAULT_URL, URL_ENV
from client.files import EXTENSIONS
from contract.endpoints import FITS, STRIPS

# walk --animation: the file names --out may have, per format
ANIMATION_EXTENSIONS = {"webp": (".webp",), "gif": (".gif",), "apng": (".png", ".apng")}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the service (default: ${URL_ENV}, else {DEFAULT_URL})")
    common.add_argument("--api-key", help=f"sent as X-API-Key (default: ${API_KEY_ENV})")
    common.add_argument("--timeout", type=float, default=120.0, help="seconds per request try (default 120)")
    common.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="requests in flight at once at most (default 4); generate and upscale jobs start at 1 "
        "and stay lower while the server refuses work",
    )
    common.add_argument(
        "--retries", type=int, default=10, help="tries per request on 429/503/connection errors (default 10)"
    )
    throttling = common.add_mutually_exclusive_group()
    throttling.add_argument(
        "--throttle-k",
        type=float,
        default=2.0,
        metavar="K",
        help="adaptive throttling: while the server refuses work (429/503), hold tries back so that "
        "about K times what it accepts is sent; at least 1 (default 2)",
    )
    throttling.add_argument(
        "--no-throttle",
        action="store_true",
        help="no adaptive throttling: never hold a try back, and generate and upscale jobs keep "
        "--concurrency tries in flight even while the server refuses work (retries still wait)",
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(
        prog="gan-client", description="gan-client: batch jobs against the service."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", parents=[common], help="generate N images into a folder")
    gen.add_argument(
        "--model", help="a served generate model, NAME or NAME@VERSION (default: the first by name)"
    )
    gen.add_argument("--n", type=int, required=True, help="images in all")
    gen.add_argument(
        "--labels", help="classes to cycle through: '0-9', '0,3,7' or names (default: every class)"
    )
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--seed", type=int, help="image i gets seed SEED+i (default: random, kept in job.json)")
    gen.add_argument("--format", choices=list(EXTENSIONS), default="png")
    gen.add_argument("--truncation", type=float, help="truncation threshold (0.05 to 10)")
    gen.add_argument("--psi", type=float, help="style models: truncation_psi (0 to 1)")
    gen.add_argument("--per-request", type=int, default=16, help="images per request (default 16)")

    up = sub.add_parser("upscale", parents=[common], help="upscale every image of a folder")
    up.add_argument("in_dir", type=Path)
    up.add_argument("out_dir", type=Path)
    up.add_argument(
        "--model",
        help="a served upscale model, NAME or NAME@VERSION (default: the first by name; with a size or "
        "--detail, the faithful model for the factor); it runs for every image, resized to the size",
    )
    up.add_argument("--format", choices=list(EXTENSIONS), help="output format (default: the input's)")
    up.add_argument("--recursive", action="store_true", help="into subfolders too, keeping the structure")
    up.add_argument(
        "--scale",
        type=float,
        help="one factor for both sides, 1 to the largest served model's (default: the model's own)",
    )
    up.add_argument("--width", type=int, help="output width in pixels (alone: the height keeps the aspect)")
    up.add_argument("--height", type=int, help="output height in pixels (alone: the width keeps the aspect)")
    up.add_argument(
        "--fit",
        choices=list(FITS),
        help="with --width and --height: contain (inside them, the default), cover (fill, centre-cropped), "
        "exact (stretched)",
    )
    up.add_argument(
        "--detail", type=float, help="0 to 1: blend of a family's faithful (0) and detail (1) models"
    )
    up.add_argument(
        "--strip", choices=list(STRIPS), help="metadata dropped: gps (the server's default), all, none"
    )

    walk = sub.add_parser(
        "walk",
        parents=[common],
        help="a latent walk between two seeds (or a loop of seeds), one file per step or one animation",
    )
    walk.add_argument(
        "--model", help="a served generate model, NAME or NAME@VERSION (default: the first by name)"
    )
    walk.add_argument("--from-seed", type=int, help="the first image is this seed's (with --to-seed)")
    walk.add_argument("--to-seed", type=int, help="the last image is this seed's")
    walk.add_argument(
        "--seeds", help="instead of --from-seed/--to-seed: a loop through these seeds and back, '1,2,3'"
    )
    walk.add_argument(
        "--steps", type=int, default=8, help="images, both ends included; with --seeds, per seed (default 8)"
    )
    walk.add_argument("--label", help="class index or name for every image (default: first seed mod classes)")
    walk.add_argument(
        "--method",
        choices=["slerp", "lerp"],
        help="default: the model's (slerp in z; lerp in w for style models)",
    )
    walk.add_argument("--truncation", type=float, help="truncation threshold (0.05 to 10)")
    walk.add_argument("--psi", type=float, help="style models: truncation_psi (0 to 1)")
    walk.add_argument(
        "--noise-seed", type=int, help="style models: the walk's noise images (default: the first seed's)"
    )
    walk.add_argument("--format", choices=list(EXTENSIONS), help="each image's file format (default png)")
    walk.add_argument(
        "--animation",
        choices=list(ANIMATION_EXTENSIONS),
        help="one looping animated file instead of a file per image; --out is then that file",
    )
    walk.add_argument(
        "--frame-ms", type=int, help="with --animation: each frame's duration, 20 to 10000 ms (default 100)"
    )
    walk.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder; with --animation, the file (walk.webp, walk.gif, walk.png or .apng)",
    )

    mix = sub.add_parser(
        "mix", parents=[common], help="a style-mixing grid (style models), one file per image"
    )
    mix.add_argument(
        "--model", help="a served style model, NAME or NAME@VERSION (default: the first by name)"
    )
    mix.add_argument("--rows", required=True, help="row source seeds: '1,2,3' or '1-3'")
    mix.add_argument("--cols", required=True, help="column source seeds: '4,5,6' or '4-6'")
    mix.add_argument(
        "--crossover", default="coarse", help="coarse, middle, fine, or a layer index (default coarse)"
    )
    mix.add_argument("--label", help="class index or name of every source (default: each seed mod classes)")
    mix.add_argument("--psi", type=float, help="truncation_psi (0 to 1)")
    mix.add_argument("--noise-seed", type=int, help="one noise for every image (default: each column's seed)")
    mix.add_argument("--format", choices=[f for f in EXTENSIONS if f != "npy"], default="png")
    mix.add_argument("--out", type=Path, required=True, help="output folder")

    sub.add_parser("models", parents=[common], help="print the served models (every loaded version) as JSON")
    sub.add_parser(
        "versions", parents=[common], help="each model's versions: loaded, default, canary, failed, policy"
    )
    sub.add_parser("health", parents=[common], help="exit 0 when the service is up and ready")

    look = sub.add_parser(
        "inspect",
        help="print the provenance record an image file carries and the request that makes it again",
    )
    look.add_argument("files", nargs="+", type=Path, metavar="FILE")
    look.add_argument(
        "--url", help=f"the service the printed commands use (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    look.add_argument(
        "--json", action="store_true", help="one JSON object per file, a line each, and nothing else"
    )
    return parser

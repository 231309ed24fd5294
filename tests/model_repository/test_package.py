"""The model repository package is the seam between export and serving: numpy only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_package_imports_neither_torch_nor_onnx_nor_the_exporter() -> None:
    # The service reads the repository with these modules and must not pull in torch; export
    # imports them too, so they must not import the exporter back.
    code = (
        "import sys, model_repository.manifest, model_repository.repository, "
        "model_repository.latents, model_repository.tiling; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'model_export', 'service') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

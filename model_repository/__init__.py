"""The model repository: the seam between export and serving, in numpy (and jsonschema) only.

`models/NAME/VERSION/{model.onnx, manifest.json, README.md, sample.png}` is written by the exporter
(`model_export`, which needs torch and onnx) and read by the service (which must not import torch).
What both sides must agree on lives here: `manifest` (schema, validation, the graphs' checksums),
`repository` (names, versions, listing, reading a version, atomic publishing), `interface` (what a
client of a version depends on, and how two versions' differ), `latents` (seed -> latent vector,
and the walk between two), `tiling` (tiled super-resolution's plan and blend).
"""

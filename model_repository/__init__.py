"""The model repository: the seam between export and serving, in numpy (and jsonschema) only.

`models/NAME/VERSION/{model.onnx, manifest.json, README.md, sample.png}` is written by the exporter
(`model_export`, which needs torch and onnx) and read by the service (`service`, which must not
import torch). What both sides must agree on lives here:

- `manifest`: the manifest's JSON schema, its validation, and the graphs' checksums (model.onnx,
  a style generator's mapping.onnx, an fp16 variant's model.fp16.onnx);
- `repository`: names, versions, listing, reading a version, atomic publishing;
- `interface`: what a client of a version depends on, and how two versions' differ (what export
  refuses to change under one name unless told, and what the service lists per version);
- `latents`: seed -> latent vector (and the walk between two), the rule a generated image's seed
  stands for;
- `tiling`: the tile plan and seam-free blend of tiled super-resolution.
"""

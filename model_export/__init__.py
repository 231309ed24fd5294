"""Export: a trained generator checkpoint -> a versioned ONNX model with a manifest, published into
the model repository. Needs the `train` and `export` extras (torch, onnx). What export and serving
share (manifest, repository layout, latents, tiling) is the numpy-only `model_repository` package.
"""

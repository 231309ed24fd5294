"""Export: a trained generator checkpoint -> a versioned ONNX model with a manifest.

The model repository (`models/NAME/VERSION/{model.onnx,manifest.json}`) is the seam between export
and serving. Three modules here describe that seam and import neither torch nor onnx, so the
service can use them: `manifest` (the JSON schema and its validation), `repository` (layout,
names, versions, atomic publishing) and `latents` (seed -> latent vector). The rest of the
package (the exporter itself) needs the `train` and `export` extras.
"""

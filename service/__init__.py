"""The inference service: FastAPI and uvicorn in front of served models batched onto ONNX Runtime.

`service.api` is the HTTP layer (the app, its routes and layers). Everything else (`registry`,
`served`, `batching`, `runtime`, `schemas`, `media`, `encoding`, `metrics`, `config`) knows nothing
of FastAPI. Nothing here imports torch. The map: docs/architecture.md.
"""

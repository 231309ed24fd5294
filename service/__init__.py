"""The inference service: FastAPI over an engine that batches requests onto ONNX Runtime.

`service.api` is the HTTP layer (thin routers). Everything else (`engine`, `batching`, `models`,
`encoding`, `metrics`, `config`) knows nothing of FastAPI. Nothing here imports torch.
"""

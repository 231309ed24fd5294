"""The inference service: FastAPI and uvicorn in front of served models batched onto ONNX Runtime.

Its wings, from the bottom up: `images` (decode, encode, stamping), `schemas` (the validated
requests and answers), `served` (one model version: runtime, batcher, admission), `lifecycle`
(registry, versions, loading, repository watch), `transport` (the HTTP layer inside uvicorn) and
`api` (the app, routes and per-call context). `config` and `metrics` are read by all of them and
import nothing of the service. Nothing here imports torch. The map: docs/architecture.md.
"""

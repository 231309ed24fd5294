"""Serving one model version: the served model of each kind (generator, style generator, upscaler)
over its runtime (ONNX Runtime sessions, IO binding, batch buckets, providers), the batcher that
forms batches and runs them on lanes, and the queue's admission policy.

May import: `service.config`, `service.metrics`, `service.request_ids`, `service.schemas`,
`service.images`, `contract`, `model_repository`. Never the lifecycle, the HTTP layer or the API
above it (tests/test_layers.py holds the rule).
"""

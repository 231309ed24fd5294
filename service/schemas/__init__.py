"""The service's schemas: the validated requests (`requests`) that go into the served models, and
the answers (`answers`) they make. Pydantic models, read by FastAPI for the OpenAPI document.

May import: `contract`, `model_repository`, `service.images` (for typing only).
"""

"""The model lifecycle: the registry of served models (which versions are loaded, put in service,
rolled back, canaried and retired), loading one version, routing a request to a version, watching
the repository for new versions, the interfaces listed by GET /v1/models, and choosing an
/upscale request's path over the loaded upscalers.

May import: `service.served`, `service.config`, `service.metrics`, `service.schemas`, `contract`,
`model_repository`. Never the HTTP layer or the API.
"""

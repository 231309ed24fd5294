"""The API: the app, one router per resource, the routes' handlers and their per-call context
(service.api.call), answers and their negotiation, errors, streamed answers, auth, middleware and
the playground. Endpoints are `async def endpoint(body, call) -> Response`.

May import every wing below it: `service.transport`, `service.lifecycle`, `service.served`,
`service.schemas`, `service.images`, and `service.config`, `service.metrics`,
`service.request_ids`, `contract` (tests/test_layers.py holds the rule).
"""

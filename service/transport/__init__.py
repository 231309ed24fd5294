"""The HTTP layer that runs inside uvicorn, below the ASGI app: the door (refusals while a model
sheds load) and its pacer (refused connections), the connection guard (slow and stalled clients),
the access log and the listening sockets. uvicorn's private modules are imported by
`service.transport.uvicorn_internals` alone, which checks what the guard and the door rely on.

May import: `service.config`, `service.metrics`, `service.request_ids`, `service.served`,
`service.schemas`, `contract`. Never the API (`service.api`) above it.
"""

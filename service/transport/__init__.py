"""The HTTP layer that runs inside uvicorn, below the ASGI app: the door (refusals while a model
sheds load, paced connections), the connection guard (slow and stalled clients), the access log,
request ids and the listening sockets. The uvicorn-private parts are behind
`service.transport.connection_guard`, the one module that subclasses uvicorn's protocol.

May import: `service.config`, `service.metrics`, `service.served`, `service.schemas`, `contract`.
Never the API (`service.api`) above it.
"""

"""The request contract between the service and its clients, standard library only: media types
and their negotiation, the error codes, the provenance record an image carries and its reader,
and one description per endpoint (its fields, bounds and choices, and how a request splits into
per-image parts).

Both `service` and `client` import it; it imports neither (nor anything outside the standard
library), so a batch machine that installs only the client gets the same tables the server uses.
"""

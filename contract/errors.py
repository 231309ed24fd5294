"""Errors the served models, the registry and the queues raise; the HTTP layer turns each into its
status and the JSON body {"error": {"code", "message"}} (service.api.errors). No FastAPI here."""

from __future__ import annotations


class ServiceError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(ServiceError):
    status, code = 400, "invalid_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class AdminOff(ServiceError):
    """The admin API is off (no admin key is configured): as if it did not exist."""

    status, code = 404, "not_found"


class UnknownModel(ServiceError):
    status, code = 404, "unknown_model"


class ModelLoadFailed(ServiceError):
    """A model version an operator asked for could not be verified, loaded or warmed up."""

    status, code = 422, "load_failed"


class NotAcceptable(ServiceError):
    status, code = 406, "not_acceptable"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class QueueFull(ServiceError):
    status, code = 429, "queue_full"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


class DeadlineExceeded(ServiceError):
    status, code = 504, "deadline_exceeded"


class ClientGone(ServiceError):
    """The client disconnected before its work reached the model; nobody reads the answer."""

    status, code = 499, "client_disconnected"


class InferenceFailed(ServiceError):
    status, code = 500, "inference_failed"

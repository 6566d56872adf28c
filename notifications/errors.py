from core.errors import DomainError


class EndpointUrlRefusedError(DomainError):
    code = "webhook_url_refused"
    http_status = 400
    default_detail = "The service will not call this URL."

"""How a request ends without a normal answer: an HTTP error (with the body of the dialect that
raised it) or a connection closed without any answer."""


class Drop(Exception):
    """Close the connection without an answer."""


class HttpError(Exception):
    def __init__(self, status: int, error: str, detail: str | None = None, headers: list | None = None, body=None):
        self.status, self.error, self.detail, self.headers, self.body = status, error, detail, headers or [], body

    def payload(self):
        """The dialect's error body, or the sandbox's own `{"error", "detail"}`."""
        if self.body is not None:
            return self.body
        return {"error": self.error} | ({"detail": self.detail} if self.detail else {})


def invalid(detail: str) -> HttpError:
    return HttpError(400, "invalid_request", detail)

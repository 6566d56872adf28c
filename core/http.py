"""What the project reads from other services' HTTP answers (webhook receivers, the provider)."""

from email.utils import parsedate_to_datetime

from django.utils import timezone


def retry_after_seconds(response) -> float | None:
    """A response's `Retry-After`, in seconds or as an HTTP date; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None

"""Static files under the production settings: WhiteNoise serves them with hashed names from the
manifest `manage.py collectstatic` writes into STATIC_ROOT. Without that manifest every page that
names a static file (the admin, the API docs) would answer 500, so the web refuses to start instead,
saying what to run; `manage.py runstack` collects them itself before it starts the web."""

from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured

# A file every page of the admin site names: if the manifest knows it, collectstatic has run.
PROBE = "admin/css/base.css"


def needs_collecting() -> bool:
    """True when the storage serves hashed names from a manifest (the production settings)."""
    return isinstance(staticfiles_storage, ManifestFilesMixin)


def require_collected() -> None:
    if not needs_collecting():
        return
    try:
        staticfiles_storage.url(PROBE)
    except ValueError as exc:  # "Missing staticfiles manifest entry"
        raise ImproperlyConfigured(
            f"static files are not collected into {staticfiles_storage.location}: run "
            "`manage.py collectstatic --noinput` with these settings before starting the web "
            "(`manage.py runstack` and the Docker image do it themselves)"
        ) from exc

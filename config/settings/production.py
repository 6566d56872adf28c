"""Production: refuses to start without a real secret and explicit hosts; secure cookies, HSTS,
JSON logs. No setting here has a default password: secrets come from the environment or the
process does not start (Flower's credentials are checked by `manage.py runflower`, database and
Redis passwords are part of DATABASE_URL and REDIS_URL)."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import LOGGING, SECRET_KEY, env, env_bool, env_int, env_list

if len(SECRET_KEY) < 32 or "not-a-secret" in SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random value of at least 32 characters")

# No 127.0.0.1 default in production: a process started without its addresses would quietly use
# services on its own host, an assumption that holds on one machine and breaks on several.
for _address in ("DATABASE_URL", "REDIS_URL"):
    if not env(_address):
        raise ImproperlyConfigured(f"{_address} must be set in production (there is no localhost default)")

DEBUG = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production")

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# TLS ends at the load balancer in front of gunicorn; it sets X-Forwarded-Proto. Plain http is
# redirected, except the health checks (below).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The health checks of the orchestrator call plain http on the container's own address.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$", r"^api/v1/ready/$"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# HSTS preload is a one-way commitment for the whole domain: the operator opts in, not this file.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Static files are collected into the image at build time, with hashed names.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

# One JSON object per log line, for the log pipeline; Celery logs through the same handler.
LOGGING["handlers"]["console"]["formatter"] = env("LOG_FORMAT") or "json"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

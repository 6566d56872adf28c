import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()

from core.static_files import require_collected  # noqa: E402 (needs the settings loaded above)

require_collected()

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
_django_application = get_wsgi_application()

# The charge POST, the API's hot path, is answered in front of Django's handler when it can be
# (ledger/api/charge_wsgi.py); every other request goes to Django's handler unchanged.
from ledger.api.charge_wsgi import with_charge_fast_path  # noqa: E402 (needs Django set up)

application = with_charge_fast_path(_django_application)

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.urls import register_converter

        from core import schema  # noqa: F401  (registers the OpenAPI extensions)
        from core.urls import IdConverter

        post_migrate.connect(_ensure_role_groups, dispatch_uid="core.ensure_role_groups")
        # `<id:pk>` in every API path: a number too long for a bigint is an unknown object (404),
        # never a database error.
        register_converter(IdConverter, "id")
        _check_rates()


def _check_rates() -> None:
    """A malformed rate would otherwise fail on the first request, as a 500."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from core.throttling import parse_rate

    for name in (
        "SELLER_THROTTLE_RATE",
        "LOGIN_THROTTLE_RATE",
        "LOGIN_THROTTLE_USERNAME_RATE",
        "LOGIN_THROTTLE_ADDRESS_RATE",
    ):
        try:
            limit, window = parse_rate(getattr(settings, name))
        except (KeyError, ValueError, TypeError):
            limit, window = 0, 0
        if limit < 1 or window < 1:
            raise ImproperlyConfigured(f'{name} must look like "100/s", "6000/m" or "10/15m"')


# What each staff role may do in the admin site. The API checks roles itself (core.permissions);
# these permissions only shape the admin site, so both agree on who may change what.
def _ensure_role_groups(sender, using="default", **kwargs) -> None:
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    # post_migrate is sent once per app with models; only after the last one do all permissions exist.
    if sender is not [config for config in apps.get_app_configs() if config.models_module is not None][-1]:
        return

    readable = Permission.objects.using(using).filter(codename__startswith="view_")
    plan = {
        "admin": Permission.objects.using(using).all(),
        "approver": readable | Permission.objects.using(using).filter(codename="change_deposit"),
        "auditor": readable,
    }
    for name, permissions in plan.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(permissions)

from django.apps import AppConfig


class DevstackConfig(AppConfig):
    """Only for its management command, `runstack`: nothing deployed imports this package."""

    name = "devstack"

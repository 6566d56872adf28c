from django.conf import settings
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


class Seller(models.Model):
    """A business that holds credit. Its balance lives in `ledger.Account`."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="seller")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def is_active(self) -> bool:
        return self.user.is_active


class SellerAPIKeyManager(BaseAPIKeyManager):
    def assign_key(self, obj: "SellerAPIKey") -> str:
        key = super().assign_key(obj)
        # The library makes "<prefix>.<hash>" the primary key; ours is a plain integer, so that
        # revoking is `DELETE .../api-keys/{id}/` and no hash ever appears in a URL or a log line.
        obj.id = None
        return key


class SellerAPIKey(AbstractAPIKey):
    """An integrator's key for one seller. Only the prefix and a SHA-512 hash are stored; the full
    key is shown once, when it is issued. Revoking is final (the library refuses to un-revoke)."""

    id = models.BigAutoField(primary_key=True)
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="api_keys")

    objects = SellerAPIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "seller API key"
        verbose_name_plural = "seller API keys"
        ordering = ["-created"]

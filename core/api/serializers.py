from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.db import IntegrityError
from rest_framework import serializers

from core.models import SellerAPIKey
from core.roles import STAFF_ROLES, Role

ROLE_CHOICES = [role.value for role in STAFF_ROLES]
ALL_ROLE_CHOICES = [role.value for role in Role]


class StaffCreateInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class StaffUpdateInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES, required=False)
    is_active = serializers.BooleanField(required=False)


class StaffOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField(source="date_joined")


class ApiKeyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=50)


class ApiKeyOutput(serializers.ModelSerializer):
    created_at = serializers.DateTimeField(source="created")

    class Meta:
        model = SellerAPIKey
        fields = ["id", "name", "prefix", "revoked", "created_at"]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The full key. Shown only in this response; store it now.")

    class Meta(ApiKeyOutput.Meta):
        fields = ["id", "name", "prefix", "key", "revoked", "created_at"]


@contextmanager
def new_username(username: str):
    """Refuse a taken username with the contract's 400, also when two requests race for it (the
    unique index decides; without this the loser would be a 500)."""
    taken = serializers.ValidationError({"username": ["A user with that username already exists."]})
    if get_user_model().objects.filter(username=username).exists():
        raise taken
    try:
        yield
    except IntegrityError:
        if get_user_model().objects.filter(username=username).exists():
            raise taken from None
        raise

from rest_framework import serializers

from apps.accounts.models import ApiKey
from apps.accounts.roles import Scope


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = [
            "prefix",
            "name",
            "scope",
            "created",
            "created_by",
            "expiry_date",
            "revoked",
            "last_used_at",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50)
    scope = serializers.ChoiceField(choices=Scope.CHOICES)
    expiry_date = serializers.DateTimeField(required=False, allow_null=True)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The key itself. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class MeSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    kind = serializers.ChoiceField(choices=["user", "api_key"])
    name = serializers.CharField()
    role = serializers.CharField(allow_null=True)
    scope = serializers.CharField(allow_null=True)

from __future__ import annotations

from rest_framework import serializers

from apps.notifications.models import (
    Event,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)

EVENT_HELP = "One of: " + ", ".join(Event.values) + "."


class NotificationSerializer(serializers.ModelSerializer):
    # Plain strings: one enum (`EventsEnum`, on webhooks) names the event set.
    kind = serializers.CharField(read_only=True, help_text=EVENT_HELP)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id",
            "kind",
            "title",
            "body",
            "link",
            "read",
            "read_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_read(self, obj: Notification) -> bool:
        return obj.read_at is not None


class MarkAllReadSerializer(serializers.Serializer):
    marked = serializers.IntegerField()


class WebhookEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), allow_empty=False
    )
    url = serializers.CharField(max_length=500)
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        min_length=16,
        max_length=200,
        help_text="Signing secret; generated when omitted. Never returned.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "enabled",
            "description",
            "secret",
            "last_status",
            "last_response_code",
            "last_delivery_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "last_status",
            "last_response_code",
            "last_delivery_at",
            "created_by",
            "created_at",
        ]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    signing_secret = serializers.CharField(
        read_only=True, help_text="Shown once, in this response only."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "signing_secret"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event = serializers.CharField(read_only=True, help_text=EVENT_HELP)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "response_code",
            "error_code",
            "error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields

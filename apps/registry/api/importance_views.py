from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.inference.importance import version_importance
from apps.registry.models import ModelVersion


class ImportanceRowSerializer(serializers.Serializer):
    feature = serializers.CharField()
    mean_abs = serializers.FloatField(
        help_text="Mean |SHAP| over explained inferences."
    )
    count = serializers.IntegerField(help_text="Explained inferences behind the mean.")


class VersionImportanceView(APIView):
    """Global importance of a version, from every explanation stored so far."""

    @extend_schema(responses=ImportanceRowSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        return Response(version_importance(version.pk))

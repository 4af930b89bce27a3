"""`/api/v1/datasets/` and `/api/v1/jobs/`: viewers read, editors write."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.roles import Role
from apps.core.errors import ApplicationError
from apps.core.parsers import JSONParser
from apps.jobs import selectors, services
from apps.jobs.api.serializers import (
    DatasetSerializer,
    DatasetUploadSerializer,
    JobCreateSerializer,
    JobEventSerializer,
    JobSerializer,
)
from apps.jobs.datasets import dataset_create, upload_size_check
from apps.jobs.models import Dataset, Job


class DatasetViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Uploaded CSV datasets with their inferred schema and a preview."""

    serializer_class = DatasetSerializer
    queryset = Dataset.objects.all()
    parser_classes = [MultiPartParser, FormParser]
    read_role = Role.VIEWER
    write_role = Role.EDITOR

    def get_queryset(self) -> Any:
        return selectors.dataset_list()

    @extend_schema(
        request={"multipart/form-data": DatasetUploadSerializer},
        responses={
            201: DatasetSerializer,
            400: OpenApiResponse(description="Not a CSV, too large, too few rows."),
            413: OpenApiResponse(
                description="The body is larger than the dataset size limit "
                "(refused before it is parsed)."
            ),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload_size_check(request.META.get("CONTENT_LENGTH"))
        form = DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        dataset = dataset_create(
            file=form.validated_data["file"],
            name=form.validated_data.get("name", ""),
            actor=request.user,
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class JobViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Training jobs: create, follow, cancel, retry."""

    serializer_class = JobSerializer
    queryset = Job.objects.all()
    filterset_class = selectors.JobFilter
    parser_classes = [JSONParser]
    read_role = Role.VIEWER
    write_role = Role.EDITOR

    def get_queryset(self) -> Any:
        return selectors.job_list()

    @extend_schema(
        request=JobCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The same key returns the same job (200).",
            )
        ],
        responses={
            201: JobSerializer,
            200: OpenApiResponse(JobSerializer, description="Same idempotency key."),
            400: OpenApiResponse(description="A bad configuration: fields named."),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        kind = data.pop("kind")
        key = data.pop("idempotency_key", None) or request.headers.get(
            "Idempotency-Key"
        )
        dataset_id = data.pop("dataset", None)
        dataset = None
        if dataset_id is not None:
            dataset = Dataset.objects.filter(pk=dataset_id).first()
            if dataset is None:
                raise ApplicationError(
                    f"Unknown dataset {dataset_id}.",
                    code="invalid_config",
                    fields={"dataset": ["Unknown dataset."]},
                )
        job, created = services.job_create(
            actor=request.user,
            dataset=dataset,
            config=data,
            kind=kind,
            idempotency_key=key,
        )
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: OpenApiResponse(description="Already finished."),
        },
        description="Queued jobs stop now; running jobs go to `cancelling` and "
        "stop at the trainer's next check.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_cancel(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(
        request=None,
        responses={
            200: JobSerializer,
            409: OpenApiResponse(description="Not failed or cancelled."),
        },
        description="Queue a failed or cancelled job again.",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = services.job_retry(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(responses=JobEventSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[])
    def events(self, request: Request, pk: str | None = None) -> Response:
        queryset = selectors.job_events(job=self.get_object())
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response(JobEventSerializer(queryset, many=True).data)
        return self.get_paginated_response(JobEventSerializer(page, many=True).data)

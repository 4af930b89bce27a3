"""The path every prediction takes, whichever door it came through:
validation -> routing -> invocation -> logging (write-through) -> shadows (queued)."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from apps.core.context import is_canonical_uuid7, new_request_id
from apps.core.db import current_schema, writes_together
from apps.core.errors import ApplicationError, NotFoundError
from apps.core.metrics import counted_log_write as log_write  # counts for /metrics
from apps.core.tasks import tenant_async
from apps.groups import routing
from apps.groups.models import Membership, ModelGroup
from apps.groups.validation import InputError, validate_rows
from apps.providers.connectors.base import InvokeRequest
from apps.providers.errors import ProviderError
from apps.registry.models import ModelArtifact, ModelVersion

# Route tables are cached per process; a changed group bumps routing_version, and
# anything else a version or provider carries is re-read at least this often.
CACHE_SECONDS = 10.0
LLM_SOURCES_KINDS = {"openai", "anthropic", "google", "huggingface", "custom_http"}


@dataclass(frozen=True)
class ServingVersion:
    id: int
    number: int
    model_name: str
    local: bool
    provider_id: int | None
    external_id: str
    input_schema: list[dict[str, Any]]
    output_schema: dict[str, Any] = field(default_factory=dict)
    artifact: ModelArtifact | None = None

    @property
    def label(self) -> str:
        return f"{self.model_name} v{self.number}"


@dataclass(frozen=True)
class GroupRoute:
    group_id: int
    slug: str
    name: str
    status: str
    strategy: str
    routing_version: int
    traffic_config: dict[str, Any]
    test_start: Any
    members: tuple[routing.RouteMember, ...]
    versions: dict[int, ServingVersion]
    loaded_at: float = field(default_factory=time.monotonic)
    # when routing_version was last confirmed against the database (mutable cell)
    checked_at: list[float] = field(
        default_factory=lambda: [time.monotonic()], compare=False
    )

    def table(self) -> routing.RouteTable:
        """The routing table; built once per route, except for a canary, whose
        weights follow the clock."""
        if self.strategy == ModelGroup.Strategy.CANARY:
            return self._build_table()
        return self._static_table

    @cached_property
    def _static_table(self) -> routing.RouteTable:
        return self._build_table()

    def _build_table(self) -> routing.RouteTable:
        config = self.traffic_config
        weights = None
        if self.strategy == ModelGroup.Strategy.CANARY:
            champion = next((m for m in self.members if m.role == "champion"), None)
            challenger = next((m for m in self.members if m.role == "challenger"), None)
            schedule = (config.get("canary") or {}).get("schedule") or []
            if champion and challenger and schedule:
                percent = routing.canary_percent(
                    schedule, self.test_start, timezone.now()
                )
                weights = routing.canary_weights(
                    champion.member_id, challenger.member_id, percent
                )
        return routing.build_table(
            self.group_id,
            self.members,
            sticky=bool(config.get("sticky")),
            fallback_to_champion=bool(config.get("fallback_to_champion")),
            weights=weights,
        )

    @property
    def is_llm(self) -> bool:
        return any(not v.local for v in self.versions.values())


_routes: dict[tuple[str, str], GroupRoute] = {}


def warm_active_groups(budget_seconds: float) -> int:
    """Build the route of every active group of every tenant and load its local
    models into this process's caches; returns how many models were loaded.

    gunicorn calls it in the master before the first fork (preload_app), so every
    worker, a recycled one included, starts with the models its first callers need
    instead of loading them on their time (about 2 s for the demo's two models).
    scikit-learn (skops) models only; ONNX sessions are opened by each worker.
    Stops after `budget_seconds` or when the artifact cache is full, and closes the
    database connections it opened: a forked worker must open its own."""
    from django.db import connections
    from django_tenants.utils import get_public_schema_name, schema_context

    from apps.registry.artifacts import (
        artifact_cache_capacity,
        artifact_cache_size,
        artifact_load,
    )
    from apps.tenants.models import Organization

    started, before = time.monotonic(), artifact_cache_size()
    room = artifact_cache_capacity()
    try:
        schemas = list(
            Organization.objects.exclude(schema_name=get_public_schema_name())
            .order_by("schema_name")
            .values_list("schema_name", flat=True)
        )
        for schema in schemas:
            with schema_context(schema):
                slugs = list(
                    ModelGroup.objects.filter(
                        status=ModelGroup.Status.ACTIVE
                    ).values_list("slug", flat=True)
                )
                for slug in slugs:
                    for version in group_route(slug).versions.values():
                        if (
                            time.monotonic() - started > budget_seconds
                            or artifact_cache_size() >= room
                        ):
                            return artifact_cache_size() - before
                        artifact = version.artifact
                        # scikit-learn models only: an onnxruntime session starts
                        # thread pools, which a forked worker would not inherit.
                        if (
                            version.local
                            and artifact is not None
                            and artifact.format == ModelArtifact.Format.SKOPS
                        ):
                            with contextlib.suppress(ApplicationError):
                                # An unloadable file: its callers get the reason.
                                artifact_load(artifact)
        return artifact_cache_size() - before
    finally:
        connections.close_all()


def clear_route_cache() -> None:
    _routes.clear()


def forget_route(slug: str) -> None:
    """This process drops its route of the group at once (the others within
    GROUP_ROUTE_TRUST_SECONDS): called wherever routing_version is bumped."""
    _routes.pop((current_schema(), slug), None)


def group_route(slug: str) -> GroupRoute:
    """The group's routing state. A route this process built less than
    GROUP_ROUTE_TRUST_SECONDS ago is used as it is (no query: a promotion or a weight
    change reaches every process within that time); after that, one small query
    checks routing_version, and the route is rebuilt only when it changed."""
    key = (current_schema(), slug)
    cached = _routes.get(key)
    if (
        cached is not None
        and time.monotonic() - cached.checked_at[0] < settings.GROUP_ROUTE_TRUST_SECONDS
    ):
        return cached
    row = (
        ModelGroup.objects.filter(slug=slug)
        .values(
            "id",
            "name",
            "status",
            "strategy",
            "routing_version",
            "traffic_config",
            "test_start",
        )
        .first()
    )
    if row is None:
        _routes.pop(key, None)
        raise NotFoundError(f"No group '{slug}'.")
    if (
        cached is not None
        and cached.routing_version == row["routing_version"]
        and cached.group_id == row["id"]
        and time.monotonic() - cached.loaded_at < CACHE_SECONDS
    ):
        cached.checked_at[0] = time.monotonic()
        return cached
    members = list(
        Membership.objects.filter(group_id=row["id"], active=True)
        .select_related("version__model")
        .order_by("id")
    )
    artifacts = {
        a.version_id: a
        for a in ModelArtifact.objects.filter(
            version_id__in=[m.version_id for m in members],
            role=ModelArtifact.Role.MODEL,
        )
    }
    versions = {}
    for m in members:
        v: ModelVersion = m.version
        versions[v.pk] = ServingVersion(
            id=v.pk,
            number=v.number,
            model_name=v.model.name,
            local=v.provider_id is None,
            provider_id=v.provider_id,
            external_id=v.external_id,
            input_schema=list(v.input_schema or []),
            output_schema=dict(v.output_schema or {}),
            artifact=artifacts.get(v.pk),
        )
    route = GroupRoute(
        group_id=row["id"],
        slug=slug,
        name=row["name"],
        status=row["status"],
        strategy=row["strategy"],
        routing_version=row["routing_version"],
        traffic_config=row["traffic_config"] or {},
        test_start=row["test_start"],
        members=tuple(
            routing.RouteMember(m.pk, m.version_id, m.role, m.weight) for m in members
        ),
        versions=versions,
    )
    _routes[key] = route
    return route


# --- invocation ---------------------------------------------------------------------


class InvocationError(Exception):
    def __init__(self, code: str, message: str, status_code: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code


def _matrix(schema: list[dict[str, Any]], rows: list[dict[str, Any]]) -> Any:
    """The rows as a matrix in the schema's feature order (a missing feature is
    None, i.e. NaN in a numeric matrix)."""
    import numpy as np

    names = [f["name"] for f in schema]
    numeric = all(f.get("type") in ("number", "integer") for f in schema)
    if numeric and len(names) > 1:
        # One itemgetter per row instead of a `get` per value (a batch of 1,000
        # rows for the background explanations: ~7 -> ~2 ms); a row missing a
        # feature, or no dict at all, takes the general way below.
        try:
            return np.asarray(list(map(itemgetter(*names), rows)), dtype=float)
        except (KeyError, TypeError):
            pass
    data = [[row.get(n) for n in names] for row in rows]
    return np.asarray(data, dtype=float if numeric else object)


def _local_outputs(
    version: ServingVersion, model: Any, matrix: Any
) -> list[dict[str, Any]]:
    predictions = model.predict(matrix)
    _check_finite(version, predictions)
    outputs: list[dict[str, Any]] = [{"prediction": _plain(p)} for p in predictions]
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        try:
            probabilities = model.predict_proba(matrix)
        except (AttributeError, NotImplementedError):
            probabilities = None
        if probabilities is not None:
            _check_finite(version, probabilities)
            classes = [_plain(c) for c in model.classes_]
            for out, row in zip(outputs, probabilities, strict=True):
                out["probabilities"] = {
                    str(c): round(float(p), 6)
                    for c, p in zip(classes, row, strict=True)
                }
    return outputs


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def invoke_local(
    version: ServingVersion, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    from apps.registry.artifacts import artifact_load

    if version.artifact is None:
        raise InvocationError("no_artifact", f"{version.label} has no model file", 409)
    try:
        model = artifact_load(version.artifact)
    except ApplicationError as exc:
        # A tampered or unloadable file makes this version unavailable, not the request bad.
        raise InvocationError(exc.code, exc.message, 503) from exc
    if hasattr(model, "run") and hasattr(model, "get_inputs"):  # onnxruntime session
        import numpy as np

        matrix = _matrix(version.input_schema, rows).astype(np.float32)
        first = model.get_inputs()[0].name
        result = model.run(None, {first: matrix})[0]
        _check_finite(version, result)
        outputs = [
            {"prediction": _plain(v) if getattr(v, "ndim", 0) == 0 else v.tolist()}
            for v in result
        ]
    else:
        try:
            outputs = _local_outputs(
                version, model, _matrix(version.input_schema, rows)
            )
        except (ValueError, TypeError) as exc:
            raise InvocationError(
                "model_error", f"{version.label} failed: {exc}", 422
            ) from exc
    return outputs


def _check_finite(version: ServingVersion, *arrays: Any) -> None:
    """JSON has no infinity or NaN: an answer holding one cannot be sent."""
    import numpy as np

    for array in arrays:
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise InvocationError(
                "model_error",
                f"{version.label} answered a number that is not finite (infinity or"
                " NaN) for these inputs.",
                422,
            )


def invoke_provider(version: ServingVersion, payload: dict[str, Any]) -> dict[str, Any]:
    from apps.providers.resilience import call_provider
    from apps.providers.selectors import provider_for_serving

    assert version.provider_id is not None
    provider = provider_for_serving(version.provider_id)
    request = InvokeRequest(
        model=version.external_id,
        messages=payload.get("messages") or [],
        inputs=payload.get("inputs"),
        parameters=payload.get("parameters") or {},
    )
    try:
        result = call_provider(provider, lambda c: c.invoke(request), fresh=True)
    except ProviderError as exc:
        raise InvocationError(exc.code, exc.message, exc.status_code) from exc
    return {
        "output": result.output,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": {
            "prompt_tokens": result.tokens_in,
            "completion_tokens": result.tokens_out,
        },
    }


def validate_llm_payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InputError({"inputs": ["expected an object with messages or prompt"]})
    messages = payload.get("messages")
    if messages is None and isinstance(payload.get("prompt"), str):
        messages = [{"role": "user", "content": payload["prompt"]}]
    if not isinstance(messages, list) or not messages:
        raise InputError(
            {"inputs.messages": ["a non-empty list of messages is needed"]}
        )
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role")
            not in ("system", "user", "assistant", "developer", "tool")
            or not isinstance(message.get("content"), str | list)
        ):
            raise InputError(
                {
                    f"inputs.messages.{index}": [
                        "each message needs a role (system/user/assistant) and content"
                    ]
                }
            )
    return {**payload, "messages": messages}


# --- the path -----------------------------------------------------------------------


@dataclass
class Prediction:
    request_id: str
    group: GroupRoute
    member: routing.RouteMember
    version: ServingVersion
    outputs: Any
    latency_ms: float
    model_latency_ms: float
    fell_back: bool = False
    explanation: Any = None
    explanation_error: str | None = None


@writes_together()
def predict(
    *,
    slug: str,
    inputs: Any,
    requester: str,
    door: str,
    routing_key: str | None = None,
    client_request_id: str | None = None,
    request_id: str | None = None,
    explain: bool = False,
) -> Prediction:
    """Validate, route, invoke, log. Raises ApplicationError subclasses (4xx/5xx);
    every routed attempt, failed or not, is a row in the group's table."""
    started = time.perf_counter()
    route = group_route(slug)
    if route.status != ModelGroup.Status.ACTIVE:
        raise ApplicationError(
            f"Group '{slug}' is {route.status}, not active.",
            code="group_not_active",
            status_code=409,
        )
    table = route.table()
    try:
        member = routing.choose(table, routing_key=routing_key)
    except LookupError as exc:
        raise ApplicationError(str(exc), code="no_members", status_code=409) from exc
    if request_id is None or not is_canonical_uuid7(request_id):
        # The log's key must be a UUIDv7 (its time picks the partition); a caller's own
        # id of another shape is kept as client_request_id.
        client_request_id = client_request_id or request_id
        request_id = new_request_id()
    rid: str = request_id
    base_row = {
        "client_request_id": client_request_id,
        "routing_key": routing_key,
        "requester": requester,
        "door": door,
    }

    def attempt(
        chosen: routing.RouteMember, *, may_fall_back: bool
    ) -> tuple[Any, float]:
        version = route.versions[chosen.version_id]
        t0 = time.perf_counter()
        try:
            if version.local:
                rows = validate_rows(version.input_schema, inputs)
                outputs: Any = invoke_local(version, rows)
                if not isinstance(inputs, list):
                    outputs = outputs[0]
            else:
                outputs = invoke_provider(version, validate_llm_payload(inputs))
        except InputError as exc:
            raise ApplicationError(
                "The inputs do not match the model's features.",
                code="invalid_inputs",
                fields=exc.fields,
            ) from exc
        except InvocationError as exc:
            model_ms = (time.perf_counter() - t0) * 1000
            # A challenger that may fall back logs its failure under a fresh id that
            # names the request's: the request id is then the champion's answer's.
            failed_id, client_id = (
                (new_request_id(), rid) if may_fall_back else (rid, client_request_id)
            )
            _log_once(
                route.group_id,
                {
                    **base_row,
                    "request_id": failed_id,
                    "client_request_id": client_id,
                    "member_id": chosen.member_id,
                    "version_id": chosen.version_id,
                    "role": chosen.role,
                    "status": "error",
                    "error_code": exc.code,
                    "error_message": exc.message[:500],
                    "latency_ms": (time.perf_counter() - started) * 1000,
                    "model_latency_ms": model_ms,
                    "input": inputs,
                },
            )
            raise
        return outputs, (time.perf_counter() - t0) * 1000

    fell_back = False
    champion = table.champion
    can_fall_back = bool(
        table.fallback_to_champion and member.role != "champion" and champion
    )
    try:
        outputs, model_ms = attempt(member, may_fall_back=can_fall_back)
    except InvocationError as exc:
        if not can_fall_back:
            raise ApplicationError(
                exc.message, code=exc.code, status_code=exc.status_code
            ) from exc
        assert champion is not None
        member, fell_back = champion, True
        try:
            outputs, model_ms = attempt(member, may_fall_back=False)
        except InvocationError as again:
            raise ApplicationError(
                again.message, code=again.code, status_code=again.status_code
            ) from again
    served = route.versions[member.version_id]
    explanation, explanation_error, sampled = None, None, False
    if served.local and explain:
        explanation, explanation_error = _explain_inline(served, inputs)
    elif served.local and _sampled(route):
        sampled = True
    total_ms = (time.perf_counter() - started) * 1000
    spooled = False
    if settings.INFERENCE_LOGGING:  # off only to measure logging's cost (bench #2)
        rid, spooled = _log_once(
            route.group_id,
            {
                **base_row,
                "request_id": request_id,
                "member_id": member.member_id,
                "version_id": member.version_id,
                "role": member.role,
                "status": "ok",
                "error_code": "fallback" if fell_back else None,
                "latency_ms": total_ms,
                "model_latency_ms": model_ms,
                "input": inputs,
                "output": outputs,
                "explanation": explanation,
                "explain_requested": sampled,
            },
        )
    if sampled and not spooled:  # a spooled row is queued once it is in its table
        explain_soon(route.group_id)
    for shadow in table.shadows:
        tenant_async(
            shadow_invoke,
            route.group_id,
            shadow.member_id,
            rid,
            inputs,
            on_commit=False,
        )
    return Prediction(
        rid,
        route,
        member,
        route.versions[member.version_id],
        outputs,
        total_ms,
        model_ms,
        fell_back,
        explanation,
        explanation_error,
    )


def _log_once(group_id: int, row: dict[str, Any]) -> tuple[str, bool]:
    """Log a row under its request id or, when that id already names another row (a
    caller that sent the same X-Request-ID twice, retrying), under a fresh one that
    names it as client_request_id. Returns (the id the row has, spooled)."""
    try:
        return row["request_id"], log_write(group_id, row)
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "23505":  # not a taken key
            raise
        fresh = new_request_id()
        again = {
            **row,
            "request_id": fresh,
            "client_request_id": row.get("client_request_id") or row["request_id"],
        }
        return fresh, log_write(group_id, again)


def _explain_inline(version: ServingVersion, inputs: Any) -> tuple[Any, str | None]:
    """SHAP for this answer, computed now (the caller asked)."""
    from apps.inference.explain import ExplanationUnavailable, explain_rows
    from apps.inference.importance import importance_add

    rows = inputs if isinstance(inputs, list) else [inputs]
    try:
        explained = explain_rows(version.id, rows, serving=version)
    except ExplanationUnavailable as exc:
        return None, str(exc)
    importance_add(version.id, explained)
    return (explained if isinstance(inputs, list) else explained[0]), None


def _sampled(route: GroupRoute) -> bool:
    rate = float(route.traffic_config.get("explain_sample_rate") or 0)
    return rate > 0 and random.random() < rate


def explain_soon(group_id: int) -> None:
    """Queue a background pass over the group's sampled rows, at most one per
    EXPLAIN_DEBOUNCE_SECONDS per process (the pass itself is safe to run twice)."""
    key = (current_schema(), group_id)
    now = time.monotonic()
    if now - _explain_queued.get(key, -1e9) < EXPLAIN_DEBOUNCE_SECONDS:
        return
    _explain_queued[key] = now
    tenant_async("apps.inference.tasks.explain_pending", group_id, on_commit=False)


_explain_queued: dict[tuple[str, int], float] = {}
EXPLAIN_DEBOUNCE_SECONDS = 2.0


def shadow_invoke(group_id: int, member_id: int, request_id: str, inputs: Any) -> str:
    """Worker side: the shadow member answers the same inputs; only the log sees it."""
    membership = Membership.objects.select_related("group").get(pk=member_id)
    route = group_route(membership.group.slug)
    version = route.versions.get(membership.version_id)
    rid = new_request_id()
    row = {
        "request_id": rid,
        "client_request_id": request_id,
        "member_id": member_id,
        "version_id": membership.version_id,
        "role": "shadow",
        "shadow": True,
        "door": "shadow",
        "requester": "shadow",
        "input": inputs,
    }
    t0 = time.perf_counter()
    try:
        if version is None:
            raise InvocationError(
                "not_member", "shadow member is no longer active", 409
            )
        if version.local:
            outputs: Any = invoke_local(
                version, validate_rows(version.input_schema, inputs)
            )
            if not isinstance(inputs, list):
                outputs = outputs[0]
        else:
            outputs = invoke_provider(version, validate_llm_payload(inputs))
    except (InvocationError, InputError) as exc:
        code = getattr(exc, "code", "invalid_inputs")
        ms = (time.perf_counter() - t0) * 1000
        log_write(
            group_id,
            {
                **row,
                "status": "error",
                "error_code": code,
                "error_message": str(exc)[:500],
                "latency_ms": ms,
                "model_latency_ms": ms,
            },
        )
        return rid
    ms = (time.perf_counter() - t0) * 1000
    log_write(
        group_id,
        {
            **row,
            "status": "ok",
            "output": outputs,
            "latency_ms": ms,
            "model_latency_ms": ms,
        },
    )
    return rid

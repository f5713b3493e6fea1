"""Small pieces every API view shares: a serializer that refuses undeclared keys, strict
strings, absolute ``url`` fields, input validation, one-object answers and limit/offset
pagination. The parsers are in ``apps.common.parsers``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

if TYPE_CHECKING:
    from rest_framework.views import APIView

MAX_PAGE_SIZE = 500
MAX_OFFSET = 10**9
_UNKNOWN_LISTED = 20
_KEY_SHOWN = 60


# --- serializers -----------------------------------------------------------------------------


def _shown(key: Any) -> str:
    text = str(key)
    return text if len(text) <= _KEY_SHOWN else text[:_KEY_SHOWN] + "…"


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses keys it does not declare.

    A typo (``enviroments``) or a read-only key must be an error the caller sees, not a silent
    no-op. ``read_only_hints`` maps keys that are known but not writable here to a hint.
    """

    read_only_hints: ClassVar[dict[str, str]] = {}

    def to_internal_value(self, data: Any) -> Any:
        unknown: list[str] = []
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = [key for key in data if key not in writable]
        if not unknown:
            return super().to_internal_value(data)
        errors: dict[str, Any] = {}
        try:
            super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                errors = dict(exc.detail)
        listed = ", ".join(_shown(k) for k in unknown[:_UNKNOWN_LISTED])
        if len(unknown) > _UNKNOWN_LISTED:
            listed += f" and {len(unknown) - _UNKNOWN_LISTED} more"
        details: dict[str, Any] = {
            api_settings.NON_FIELD_ERRORS_KEY: [f"Unknown field(s): {listed}."]
        }
        for key in unknown[:_UNKNOWN_LISTED]:
            hint = self.read_only_hints.get(str(key))
            details[_shown(key)] = [hint or "Unknown field."]
        details.update(errors)
        raise serializers.ValidationError(details)


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would quietly turn ``123`` into ``"123"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ListFilterSerializer(StrictSerializer):
    """Query parameters of a list endpoint; ``limit`` and ``offset`` are the paginator's."""

    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)

    def filters(self) -> dict[str, Any]:
        """The validated filters without the pagination parameters."""
        return {k: v for k, v in self.validated_data.items() if k not in ("limit", "offset")}


@extend_schema_field(OpenApiTypes.URI)
class AbsoluteUrlField(serializers.Field):
    """The absolute URL of an object's API detail: ``url`` on every output object.

    ``view_name`` may be a function of the object, for lists that mix kinds.
    """

    def __init__(
        self,
        view_name: str | Callable[[Any], str],
        kwargs: Callable[[Any], dict[str, Any]],
        **options: Any,
    ):
        self.view_name = view_name
        self.url_kwargs = kwargs
        options.setdefault("source", "*")
        options["read_only"] = True
        super().__init__(**options)

    def to_representation(self, value: Any) -> str:
        view_name = self.view_name if isinstance(self.view_name, str) else self.view_name(value)
        path = reverse(view_name, kwargs=self.url_kwargs(value))
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def absolute_url(request: Request, view_name: str, **kwargs: Any) -> str:
    return request.build_absolute_uri(reverse(view_name, kwargs=kwargs))


# --- input and output ------------------------------------------------------------------------


def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> Any:
    """``data`` parsed by an input serializer; bad input raises, and the API answers 400."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class _Prototype:
    """A serializer built once, whose bound fields validate values for every request."""

    def __init__(self, serializer_class: type[serializers.Serializer]) -> None:
        self.serializer = serializer_class()
        self.fields = [f for f in self.serializer.fields.values() if not f.read_only]
        self.names = frozenset(f.field_name for f in self.fields)


_prototypes: dict[type[serializers.Serializer], _Prototype] = {}


def validated_fast(serializer_class: type[serializers.Serializer], data: Any) -> Any:
    """``validated`` for the hottest inputs, with the same rules and the same errors.

    A serializer deep-copies its declared fields for every instance, which on the decision
    endpoint costs more than the rest of the validation. Here the fields are built once and
    reused (validating a value keeps no state on a field). Anything unusual (not an object,
    unknown keys, any error) goes the ordinary way, so its messages are exactly the API's.
    """
    proto = _prototypes.get(serializer_class)
    if proto is None:
        proto = _prototypes[serializer_class] = _Prototype(serializer_class)
    if not isinstance(data, Mapping) or not proto.names.issuperset(data):
        return validated(serializer_class, data)
    attrs: dict[str, Any] = {}
    try:
        for field in proto.fields:
            try:
                attrs[str(field.source)] = field.run_validation(field.get_value(data))
            except serializers.SkipField:
                continue
        return proto.serializer.validate(attrs)
    except (serializers.ValidationError, DjangoValidationError):
        return validated(serializer_class, data)


def list_filters(request: Request, serializer_class: type[ListFilterSerializer]) -> dict[str, Any]:
    """A list endpoint's validated query parameters, without ``limit`` and ``offset``."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.filters()


def object_response(
    request: Request,
    serializer_class: type[serializers.BaseSerializer],
    instance: Any,
    *,
    status: int = 200,
) -> Response:
    """One object in its output representation (its ``url`` fields need the request)."""
    return Response(serializer_class(instance, context={"request": request}).data, status=status)


# --- pagination ------------------------------------------------------------------------------


class Pagination(LimitOffsetPagination):
    max_limit = MAX_PAGE_SIZE


def paginated_response(
    *,
    request: Request,
    view: APIView,
    queryset: QuerySet[Any] | list[Any],
    serializer_class: type[serializers.BaseSerializer],
) -> Response:
    """One page of ``queryset`` in the ``{count, next, previous, results}`` envelope."""
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context={"request": request}).data
    return paginator.get_paginated_response(data)


class FirstRendererNegotiation(DefaultContentNegotiation):
    """Answer with the view's first renderer whatever the client's ``Accept`` says.

    For endpoints whose one success representation is not JSON (the YAML export returns its
    own response): errors stay in the JSON error shape, and ``Accept: application/yaml`` is
    not refused with a 406 before the view runs.
    """

    def select_renderer(
        self, request: Any, renderers: Any, format_suffix: str | None = None
    ) -> tuple[Any, str]:
        renderer = renderers[0]
        return renderer, renderer.media_type

"""The research API under /api/: iterations, model versions, batches and their exports, for
researchers and admins (token or session authentication; rlhf.authentication).

Views are thin: they check the request's shape (rlhf.serializers), read through rlhf.selectors
and change state through rlhf.services and annotation.services. Every error, whatever raised
it, leaves through tandem.api_errors as {"detail": ..., "field": ...}.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from annotation import services as annotation_services
from annotation.export import TRAINING_FORMATS, jsonl_lines, raw_records
from annotation.stats import batch_statistics
from rlhf import hyperparameters, selectors, services
from rlhf.authentication import ApiTokenAuthentication, IsResearcher
from rlhf.serializers import (
    BatchDetailSerializer,
    BatchSerializer,
    ErrorSerializer,
    Hyperparameters,
    IterationChartsSerializer,
    IterationDetailQuery,
    IterationDetailSerializer,
    IterationFilter,
    IterationSerializer,
    IterationStartInput,
    LabelsQuery,
    ModelVersionFilter,
    ModelVersionSerializer,
    RatingsSerializer,
    RollbackInput,
    VersionChartsSerializer,
)
from tandem import idempotency

# --- the views' common ground ---------------------------------------------------------------


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


_ERRORS = {
    400: "the request is malformed or the loop's rules refuse it; `field` names the input",
    401: "not authenticated (no token, a bad or revoked token, no session)",
    403: "authenticated, but not a researcher or admin (or a session request without CSRF)",
    404: "no such object (or page)",
    409: "well formed, but the current state does not allow it",
    429: "throttled: too many of these requests; Retry-After says when to try again",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses of an operation: 401 and 403 everywhere, plus `codes`."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERRORS[code])
        for code in sorted({401, 403, *codes})
    }


class ResearchView(generics.GenericAPIView):
    # Token first: its authenticate_header makes DRF answer anonymous requests with 401. The
    # session check enforces CSRF on writes.
    authentication_classes = [ApiTokenAuthentication, SessionAuthentication]
    permission_classes = [IsResearcher]
    pagination_class = Pagination
    # Set on the views whose requests are expensive (training, exports); rates in settings.
    throttled_methods: frozenset[str] = frozenset()

    def get_throttles(self):
        if self.request.method in self.throttled_methods:
            return [ScopedRateThrottle()]
        return []

    def valid(self, serializer_class, data) -> dict[str, Any]:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# --- iterations -----------------------------------------------------------------------------


class IterationList(ResearchView, generics.ListAPIView):
    serializer_class = IterationSerializer
    throttle_scope = "iteration-start"
    throttled_methods = frozenset({"POST"})

    def get_queryset(self):
        return selectors.iteration_list(**self.valid(IterationFilter, self.request.query_params))

    @extend_schema(
        summary="List iterations, newest first",
        parameters=[IterationFilter],
        responses={200: IterationSerializer(many=True), **errors(400, 404)},
    )
    def get(self, request):
        return self.list(request)

    @extend_schema(
        summary="Start an iteration",
        description="Queues an iteration on the `train` queue. With an `Idempotency-Key`, a "
        "retry returns the iteration the first request started (200) instead of starting "
        "another; the same key with a different request is a 409.",
        request=IterationStartInput,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="any 1-200 printable ASCII characters, unique per intended start",
            )
        ],
        responses={
            201: OpenApiResponse(IterationSerializer, description="started"),
            200: OpenApiResponse(IterationSerializer, description="a replay of an earlier start"),
            **errors(400, 409, 429),
        },
    )
    def post(self, request):
        data = self.valid(IterationStartInput, request.data)
        started = services.start_iteration(
            actor=request.user, idempotency_key=idempotency.header_key(request.headers), **data
        )
        return Response(
            IterationSerializer(started.iteration).data,
            status=status.HTTP_201_CREATED if started.created else status.HTTP_200_OK,
        )


class IterationDetail(ResearchView, generics.RetrieveAPIView):
    queryset = selectors.iteration_detail()
    serializer_class = IterationDetailSerializer

    @extend_schema(
        summary="An iteration: steps, progress, metrics, error and the end of its log",
        parameters=[IterationDetailQuery],
        responses={200: IterationDetailSerializer, **errors(400, 404)},
    )
    def get(self, request, pk: int):
        lines = self.valid(IterationDetailQuery, request.query_params)["log_lines"]
        iteration = self.get_object()
        iteration.log_tail = selectors.iteration_log_tail(iteration=iteration, lines=lines)
        return Response(self.get_serializer(iteration).data)


class IterationCancel(ResearchView):
    queryset = selectors.iteration_list()
    serializer_class = IterationSerializer

    @extend_schema(
        summary="Cancel an iteration",
        description="A queued iteration no worker holds is cancelled at once; a running one "
        "becomes `cancelling` and stops at its next step.",
        request=None,
        responses={200: IterationSerializer, **errors(404, 409)},
    )
    def post(self, request, pk: int):
        iteration = services.cancel_iteration(iteration=self.get_object())
        return Response(IterationSerializer(iteration).data)


class IterationCharts(ResearchView):
    queryset = selectors.iteration_detail()
    serializer_class = IterationChartsSerializer

    @extend_schema(
        summary="An iteration's figures as data",
        description="What the research page draws for it: reward-model accuracy per strength "
        "level and per held-out batch, the policy stage's curves (PPO: reward and KL per step; "
        "DPO: implicit-reward accuracy and loss; rejection sampling: reward against K and the "
        "fine-tuning loss). A figure of a step that has not finished has no series and says "
        "so in `empty`.",
        responses={200: IterationChartsSerializer, **errors(404)},
    )
    def get(self, request, pk: int):
        iteration = self.get_object()
        figures = selectors.iteration_figures(iteration=iteration)
        return Response(self.get_serializer({"iteration": iteration.pk, "figures": figures}).data)


class Hyperparameters(ResearchView):
    @extend_schema(
        summary="The hyper-parameters an iteration may set, per stage",
        description="Per stage (`reward`, `rejection_sampling`, `ppo`, `dpo`, `evaluate`), "
        "the fields of its config that a start's `hyperparameters` may set, with their types, "
        "defaults and help.",
        responses={200: Hyperparameters, **errors()},
    )
    def get(self, request):
        return Response(hyperparameters.describe())


# --- model versions -------------------------------------------------------------------------


class ModelVersionList(ResearchView, generics.ListAPIView):
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.model_version_list(
            **self.valid(ModelVersionFilter, self.request.query_params)
        )

    @extend_schema(
        summary="List model versions with their lineage, newest first",
        parameters=[ModelVersionFilter],
        responses={200: ModelVersionSerializer(many=True), **errors(400, 404)},
    )
    def get(self, request):
        return self.list(request)


class ModelVersionView(ResearchView):
    queryset = selectors.model_version_list()
    serializer_class = ModelVersionSerializer
    lookup_field = "name"


class ModelVersionDetail(ModelVersionView, generics.RetrieveAPIView):
    @extend_schema(
        summary="A model version", responses={200: ModelVersionSerializer, **errors(404)}
    )
    def get(self, request, name: str):
        return self.retrieve(request)


class ModelVersionPublish(ModelVersionView):
    @extend_schema(
        summary="Publish a ready policy",
        description="It becomes the newest published policy; the open batch closes and the "
        "next opens, served by it and the previous published policy.",
        request=None,
        responses={200: ModelVersionSerializer, **errors(400, 404, 409)},
    )
    def post(self, request, name: str):
        version = services.publish_version(version=self.get_object(), actor=request.user)
        return Response(ModelVersionSerializer(version).data)


class ModelVersionRollback(ModelVersionView):
    @extend_schema(
        summary="Roll back the newest published policy",
        description="It is retired and the policy published before it serves again (a new "
        "batch opens). Answers with the version serving again.",
        request=RollbackInput,
        responses={200: ModelVersionSerializer, **errors(400, 404, 409)},
    )
    def post(self, request, name: str):
        reason = self.valid(RollbackInput, request.data)["reason"]
        serving = services.rollback_version(
            version=self.get_object(), actor=request.user, reason=reason
        )
        return Response(ModelVersionSerializer(serving).data)


class ModelVersionDownload(ModelVersionView):
    throttle_scope = "export"
    throttled_methods = frozenset({"GET"})

    @extend_schema(
        summary="Download a model version as a tar archive",
        description="A policy comes in the Hugging Face Llama layout (config.json, "
        "model.safetensors, tokenizer files: `AutoModelForCausalLM.from_pretrained` reads the "
        "unpacked folder). A reward model comes as its Tandem checkpoint "
        "(`modelcore.checkpoint.load_checkpoint` reads it): Hugging Face has no layout for "
        "Tandem's scalar heads.",
        responses={
            (200, "application/x-tar"): OpenApiResponse(OpenApiTypes.BINARY),
            **errors(404, 409, 429),
        },
    )
    def get(self, request, name: str):
        filename, chunks = selectors.model_archive(version=self.get_object())
        return StreamingHttpResponse(
            chunks,
            content_type="application/x-tar",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


class ModelVersionCharts(ResearchView):
    serializer_class = VersionChartsSerializer

    @extend_schema(
        summary="The figures across versions as data",
        tags=["models"],
        description="Mean helpfulness against mean safety reward of every evaluated policy "
        "(Llama 2's progression chart; each from its own iteration's evaluation), and the "
        "Bradley–Terry rating of every version that served (see GET /api/ratings/).",
        responses={200: VersionChartsSerializer, **errors()},
    )
    def get(self, request):
        rated = selectors.version_ratings()["ratings"]
        figures = selectors.version_figures(rated=rated)
        return Response(self.get_serializer({"figures": figures}).data)


class Ratings(ResearchView):
    serializer_class = RatingsSerializer

    @extend_schema(
        summary="Bradley–Terry ratings of the model versions from the labels",
        tags=["models"],
        description="Every label whose two responses came from two different versions is a "
        "game won by the chosen one's. Ratings are on Chatbot Arena's scale, 400·log10 of the "
        "odds, with the base policy (`anchor`) fixed at 1000: 400 points ahead wins 10 games "
        "of 11. Each version plays one virtual drawn game against the anchor, which keeps a "
        "version that won or lost every game finite. `low`/`high`: the 95% interval of a "
        "seeded bootstrap over the games.",
        responses={200: RatingsSerializer, **errors()},
    )
    def get(self, request):
        return Response(self.get_serializer(selectors.version_ratings()).data)


# --- batches --------------------------------------------------------------------------------


class BatchView(ResearchView):
    queryset = selectors.batch_list()
    serializer_class = BatchSerializer
    lookup_field = "name"


class BatchList(BatchView, generics.ListAPIView):
    @extend_schema(
        summary="List batches with their label counts, newest first",
        responses={200: BatchSerializer(many=True), **errors(404)},
    )
    def get(self, request):
        return self.list(request)


class BatchDetail(BatchView):
    @extend_schema(
        summary="A batch with its full statistics",
        responses={200: BatchDetailSerializer, **errors(404)},
    )
    def get(self, request, name: str):
        batch = self.get_object()
        batch.statistics = batch_statistics(batch)
        return Response(BatchDetailSerializer(batch).data)


class BatchClose(BatchView):
    @extend_schema(
        summary="Close an open batch early",
        description="No new prompts or labels; annotation waits until the next batch opens "
        "(publishing a policy opens one).",
        request=None,
        responses={200: BatchSerializer, **errors(404, 409)},
    )
    def post(self, request, name: str):
        annotation_services.close_batch(batch=self.get_object())
        return Response(BatchSerializer(self.get_object()).data)


class RowFormatNegotiation(DefaultContentNegotiation):
    """The labels' `format` parameter names the rows' format, not a renderer (DRF's
    URL_FORMAT_OVERRIDE): the response's renderer follows the Accept header alone."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)


class BatchLabels(ResearchView):
    throttle_scope = "export"
    content_negotiation_class = RowFormatNegotiation
    throttled_methods = frozenset({"GET"})

    @extend_schema(
        summary="The batch's labels as JSON Lines",
        description="`training`: one prompt/chosen/rejected row per label, held-out ones "
        'marked `"heldout": true` (the rows the reward models and DPO read; `format=trl`: '
        "as TRL's conversational preference rows). `raw`: everything stored about each "
        "label, then the skips.",
        parameters=[LabelsQuery],
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR),
            **errors(400, 404, 429),
        },
    )
    def get(self, request, name: str):
        query = self.valid(LabelsQuery, request.query_params)
        if query["kind"] == "raw":
            kind, records = "raw", raw_records([name])
        else:
            kind = "training" if query["format"] == "tandem" else query["format"]
            records = TRAINING_FORMATS[query["format"]]([name])
        return StreamingHttpResponse(
            jsonl_lines(records),
            content_type="application/jsonl; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}-{kind}.jsonl"'},
        )


def research_endpoints_only(endpoints: list[tuple]) -> list[tuple]:
    """drf-spectacular preprocessing hook: the schema documents the research API alone (the
    annotators' API under /annotate/api/ is the pages' private interface)."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]

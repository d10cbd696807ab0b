from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from rlhf import api

app_name = "research-api"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's start-up script from its own URL, not inline: the CSP allows no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="research-api:schema"), name="docs"),
    path("iterations/", api.IterationList.as_view(), name="iterations"),
    path("iterations/<int:pk>/", api.IterationDetail.as_view(), name="iteration"),
    path("iterations/<int:pk>/cancel/", api.IterationCancel.as_view(), name="iteration-cancel"),
    path("iterations/<int:pk>/charts/", api.IterationCharts.as_view(), name="iteration-charts"),
    path("hyperparameters/", api.Hyperparameters.as_view(), name="hyperparameters"),
    path("models/", api.ModelVersionList.as_view(), name="models"),
    # Not under models/: a version may be named "charts" or "ratings".
    path("charts/", api.ModelVersionCharts.as_view(), name="charts"),
    path("ratings/", api.Ratings.as_view(), name="ratings"),
    path("models/<slug:name>/", api.ModelVersionDetail.as_view(), name="model"),
    path("models/<slug:name>/publish/", api.ModelVersionPublish.as_view(), name="model-publish"),
    path("models/<slug:name>/rollback/", api.ModelVersionRollback.as_view(), name="model-rollback"),
    path("models/<slug:name>/download/", api.ModelVersionDownload.as_view(), name="model-download"),
    path("batches/", api.BatchList.as_view(), name="batches"),
    path("batches/<slug:name>/", api.BatchDetail.as_view(), name="batch"),
    path("batches/<slug:name>/close/", api.BatchClose.as_view(), name="batch-close"),
    path("batches/<slug:name>/labels.jsonl", api.BatchLabels.as_view(), name="batch-labels"),
]

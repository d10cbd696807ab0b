from django.urls import path

from annotation import api, review_api

app_name = "annotation-api"
urlpatterns = [
    path("progress/", api.Progress.as_view(), name="progress"),
    path("dialogues/", api.Dialogues.as_view(), name="dialogues"),
    path("dialogues/<int:dialogue_id>/turns/", api.DialogueTurns.as_view(), name="turns"),
    path("comparisons/<int:comparison_id>/", api.ComparisonDetail.as_view(), name="comparison"),
    path("comparisons/<int:comparison_id>/label/", api.ComparisonLabel.as_view(), name="label"),
    path("comparisons/<int:comparison_id>/skip/", api.ComparisonSkip.as_view(), name="skip"),
    path("comparisons/<int:comparison_id>/retry/", api.ComparisonRetry.as_view(), name="retry"),
    path("queue/next/", api.QueueNext.as_view(), name="next"),
    path("reviews/", review_api.LabelsToReview.as_view(), name="reviews"),
    path("labels/<int:label_id>/review/", review_api.LabelReview.as_view(), name="review"),
]

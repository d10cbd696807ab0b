from django.urls import path
from django.views.generic import RedirectView

from frontend import review_views, views

app_name = "frontend"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="frontend:home"), name="root"),
    path("annotate/", views.home, name="home"),
    path("annotate/dialogues/", views.new_dialogue, name="new-dialogue"),
    path(
        "annotate/dialogues/<int:dialogue_id>/turns/",
        views.continue_dialogue,
        name="continue-dialogue",
    ),
    path("annotate/queue/", views.queue_next, name="queue"),
    path("annotate/comparisons/<int:comparison_id>/", views.comparison, name="comparison"),
    path("annotate/comparisons/<int:comparison_id>/skip/", views.skip, name="skip"),
    path("annotate/sent-back/", review_views.sent_back, name="sent-back"),
    path("review/", review_views.review, name="review"),
    path("review/labels/<int:label_id>/", review_views.review_label, name="review-label"),
]

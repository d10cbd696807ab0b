from django.urls import path

from rlhf import views

app_name = "research"
urlpatterns = [
    path("", views.research_home, name="home"),
    path("iterations/<int:pk>/", views.iteration_page, name="iteration"),
]

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from tandem.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("annotate/api/", include("annotation.api_urls")),
    path("api/", include("rlhf.api_urls")),
    path("research/", include("rlhf.urls")),
    path("", include("frontend.urls")),
]

# A database or Redis outage is a 503 with Retry-After, not a 500 (tandem/errors.py).
handler500 = "tandem.errors.server_error"
# What Django refuses before a view runs (too many fields, a bad multipart body): a clear 400.
handler400 = "tandem.errors.bad_request"

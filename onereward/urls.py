"""The platform's URLs. Each app of the loop brings its pages (`APP.urls`) and its API routes
(`APP.api.routes`, plus `APP.api.urlpatterns` outside the router), found by name so that the
project imports no app module here."""
from importlib import import_module

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from .lockout import obtain_auth_token

# In the loop's order; also the order of the API root.
API_APPS = ["inputs", "preferences", "generation", "rewardmodel", "rl", "evaluation"]
PAGE_APPS = ["generation", "inputs", "annotation", "evaluation"]

# Admin pages of models that lived in `annotation` before each stage of the loop had its app:
# old bookmarks and links land on the new pages.
MOVED_ADMIN_MODELS = {
    "inputs": ["dimension", "task", "taskdimension", "tag", "input", "inputimport"],
    "preferences": ["preferencedataset"],
    "evaluation": ["study", "studyarm", "studyitem", "studycandidate", "studyslot", "studyjudgment",
                   "usabilityvote", "studypick"],
}
moved_admin = [
    re_path(rf"^admin/annotation/(?P<model>{model})/(?P<rest>.*)$",
            RedirectView.as_view(url=f"/admin/{app}/%(model)s/%(rest)s", permanent=True, query_string=True))
    for app, models in MOVED_ADMIN_MODELS.items() for model in models
]

router = DefaultRouter()
api_paths = []
for app in API_APPS:
    api = import_module(f"{app}.api")
    for prefix, viewset, basename in api.routes:
        router.register(prefix, viewset, basename=basename)
    api_paths += getattr(api, "urlpatterns", [])

urlpatterns = [
    *moved_admin,
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include(api_paths)),
    path("api/", include(router.urls)),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *(path("", include(f"{app}.urls")) for app in PAGE_APPS),
]

# JSON under /api/, Django's pages elsewhere (onereward/api_errors.py).
handler400 = "onereward.api_errors.bad_request"
handler403 = "onereward.api_errors.permission_denied"
handler404 = "onereward.api_errors.page_not_found"
handler500 = "onereward.api_errors.server_error"

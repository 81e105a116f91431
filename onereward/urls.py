"""The platform's URLs. Each app of the loop brings its pages (`APP.urls`) and its API routes
(`APP.api.routes`, plus `APP.api.urlpatterns` outside the router), found by name so that the
project imports no app module here."""
from importlib import import_module

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

# In the loop's order; also the order of the API root.
API_APPS = ["inputs", "preferences", "generation", "rewardmodel", "rl", "evaluation"]
PAGE_APPS = ["generation", "inputs", "annotation", "evaluation"]

router = DefaultRouter()
api_paths = []
for app in API_APPS:
    api = import_module(f"{app}.api")
    for prefix, viewset, basename in api.routes:
        router.register(prefix, viewset, basename=basename)
    api_paths += getattr(api, "urlpatterns", [])

urlpatterns = [
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

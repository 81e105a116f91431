from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from annotation import api as annotation_api
from annotation.preference_api import PreferenceDatasetViewSet
from annotation.leaderboard_api import LeaderboardView
from annotation.study_api import StudyViewSet
from generation import api as generation_api
from rewardmodel import api as rewardmodel_api
from rl import api as rl_api

router = DefaultRouter()
router.register("tasks", annotation_api.TaskViewSet, basename="task")
router.register("dimensions", annotation_api.DimensionViewSet, basename="dimension")
router.register("tags", annotation_api.TagViewSet, basename="tag")
router.register("inputs", annotation_api.InputViewSet, basename="input")
router.register("input-imports", annotation_api.InputImportViewSet, basename="input-import")
router.register("preference-datasets", PreferenceDatasetViewSet, basename="preference-dataset")
router.register("generators", generation_api.GeneratorViewSet, basename="generator")
router.register("generation-batches", generation_api.GenerationBatchViewSet, basename="generation-batch")
router.register("reward-model-runs", rewardmodel_api.RewardModelRunViewSet, basename="reward-model-run")
router.register("reward-models", rewardmodel_api.RewardModelVersionViewSet, basename="reward-model")
router.register("rl-runs", rl_api.RLRunViewSet, basename="rl-run")
router.register("policy-checkpoints", rl_api.PolicyCheckpointViewSet, basename="policy-checkpoint")
router.register("studies", StudyViewSet, basename="study")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/leaderboard/", LeaderboardView.as_view(), name="api-leaderboard"),
    path("api/", include(router.urls)),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("generation.urls")),
    path("", include("annotation.urls")),
]

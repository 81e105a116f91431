from django.urls import path

from . import views

urlpatterns = [
    path("candidates/<uuid:public_id>/<str:kind>.img", views.candidate_file, name="candidate-file"),
]

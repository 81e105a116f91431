from django.urls import path

from . import views

urlpatterns = [
    path("annotate/", views.workspace, name="annotate-home"),
    path("annotate/task/", views.task_fragment, name="annotate-task"),
    path("annotate/slots/<int:slot_id>/<str:kind>.img", views.input_image, name="annotate-input-image"),
    path("annotate/slots/<int:slot_id>/candidates/<int:position>.img", views.candidate_image,
         name="annotate-candidate-image"),
    path("annotate/slots/<int:slot_id>/judgment", views.judgment, name="annotate-judgment"),
    path("annotate/slots/<int:slot_id>/skip", views.skip_slot, name="annotate-skip"),
]

from django.urls import path

from . import annotate_views, study_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("inputs/", views.input_list, name="input-list"),
    path("inputs/<int:pk>/", views.input_detail, name="input-detail"),
    path("inputs/<int:pk>/<str:kind>.img", views.input_file, name="input-file"),
    path("annotate/", annotate_views.workspace, name="annotate-home"),
    path("annotate/task/", annotate_views.task_fragment, name="annotate-task"),
    path("annotate/slots/<int:slot_id>/<str:kind>.img", annotate_views.input_image, name="annotate-input-image"),
    path("annotate/slots/<int:slot_id>/candidates/<int:position>.img", annotate_views.candidate_image,
         name="annotate-candidate-image"),
    path("annotate/slots/<int:slot_id>/judgment", annotate_views.judgment, name="annotate-judgment"),
    path("annotate/slots/<int:slot_id>/skip", annotate_views.skip_slot, name="annotate-skip"),
    path("studies/", study_views.study_list, name="study-list"),
    path("studies/<int:study_id>/", study_views.study_page, name="study-page"),
    path("studies/<int:study_id>/item/", study_views.item_fragment, name="study-item"),
    path("studies/slots/<int:slot_id>/<str:kind>.img", study_views.input_image, name="study-input-image"),
    path("studies/slots/<int:slot_id>/candidates/<int:position>.img", study_views.candidate_image,
         name="study-candidate-image"),
    path("studies/slots/<int:slot_id>/judgment", study_views.judgment, name="study-judgment"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<int:study_id>/", views.study_page, name="study-page"),
    path("studies/<int:study_id>/item/", views.item_fragment, name="study-item"),
    path("studies/slots/<int:slot_id>/<str:kind>.img", views.input_image, name="study-input-image"),
    path("studies/slots/<int:slot_id>/candidates/<int:position>.img", views.candidate_image,
         name="study-candidate-image"),
    path("studies/slots/<int:slot_id>/judgment", views.judgment, name="study-judgment"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("inputs/", views.input_list, name="input-list"),
    path("inputs/<int:pk>/", views.input_detail, name="input-detail"),
    path("inputs/<int:pk>/<str:kind>.img", views.input_file, name="input-file"),
]

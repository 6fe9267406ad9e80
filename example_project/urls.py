from django.contrib import admin
from django.urls import path

from example_project.signups import views

urlpatterns = [
    path("", views.signup, name="signup"),
    path("api/signups/", views.api_signup, name="api-signup"),
    path("admin/", admin.site.urls),
]

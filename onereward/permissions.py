from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated


class ModelPermissionsWithView(DjangoModelPermissions):
    """DRF's model permissions, with reads requiring the model's `view` permission too, so an
    annotator's token reads nothing the admin would not show them. Views without a model (the API
    root) need a signed-in user."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            return IsAuthenticated().has_permission(request, view)
        return super().has_permission(request, view)

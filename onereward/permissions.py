from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated


class ModelPermissionsWithView(DjangoModelPermissions):
    """DRF's model permissions, with reads requiring the model's `view` permission too, so an
    annotator's token reads nothing the admin would not show them. Views without a model (the API
    root) need a signed-in user.

    `action_perms` maps a view action (a custom @action) to the permissions it needs instead of the
    method's; "%(app_label)s" and "%(model_name)s" are the view's model, as in perms_map."""

    action_perms: dict[str, list[str]] = {}

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        needed = self.action_perms.get(getattr(view, "action", None))
        if needed is not None:
            if not request.user.is_authenticated:
                return False
            opts = self._queryset(view).model._meta
            names = {"app_label": opts.app_label, "model_name": opts.model_name}
            return request.user.has_perms([perm % names for perm in needed])
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            return IsAuthenticated().has_permission(request, view)
        return super().has_permission(request, view)

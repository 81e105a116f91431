from django.contrib import admin

from .roles import can_use_admin


class PlatformAdminSite(admin.AdminSite):
    site_header = "OneReward platform"
    site_title = "OneReward admin"
    index_title = "Data, generation and training"

    def has_permission(self, request):
        # Staff alone is not enough: an annotator who was made staff by hand still stays out.
        return super().has_permission(request) and can_use_admin(request.user)

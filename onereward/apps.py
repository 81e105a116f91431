from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class OnerewardConfig(AppConfig):
    name = "onereward"
    verbose_name = "OneReward platform"

    def ready(self):
        from django.contrib.auth.models import User
        from django.db.models.signals import m2m_changed, post_migrate

        from . import roles

        post_migrate.connect(roles.sync_role_groups_after_migrate, dispatch_uid="onereward-sync-roles")
        m2m_changed.connect(
            roles.keep_staff_flag_in_step, sender=User.groups.through, dispatch_uid="onereward-staff-flag"
        )


class PlatformAdminConfig(AdminConfig):
    default_site = "onereward.admin_site.PlatformAdminSite"

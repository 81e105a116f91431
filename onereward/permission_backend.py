"""Django's model permissions, read in one query per request instead of two."""
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q


class ModelBackendOneQuery(ModelBackend):
    """ModelBackend whose `has_perm` reads a user's own and their groups' permissions together.

    Every annotator request checks `annotation.annotate`; ModelBackend reads the user's direct
    permissions and their groups' permissions in two queries. The answer is the same set, still read
    from the database on every request (a permission taken away counts at the next request), and
    kept on the user object for the rest of the request, as ModelBackend keeps it.
    """

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            permissions = Permission.objects.all()
            if not user_obj.is_superuser:
                direct = Permission.objects.filter(user=user_obj).values("pk")
                through_groups = Permission.objects.filter(group__user=user_obj).values("pk")
                permissions = permissions.filter(Q(pk__in=direct) | Q(pk__in=through_groups))
            user_obj._perm_cache = {
                f"{app_label}.{codename}"
                for app_label, codename in permissions.values_list("content_type__app_label", "codename").order_by()
            }
        return user_obj._perm_cache

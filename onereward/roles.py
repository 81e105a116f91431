"""The platform's roles, as data: which permissions each role's group holds.

A role is a Django group kept in step with this table after every migration, so a model added by a
later app is covered by the patterns below without a code change here. Staff status (the right to
open the admin) follows from the roles: admins and ML engineers have it, annotators never do.
"""
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Role:
    slug: str
    group_name: str
    description: str
    # "app_label.codename" patterns, fnmatch-style ("annotation.*", "rl.view_*").
    permissions: tuple[str, ...]
    staff: bool


ANNOTATOR = Role(
    slug="annotator",
    group_name="Annotators",
    description="Judges candidate sets in the browser; never reaches the admin.",
    permissions=("annotation.annotate",),
    staff=False,
)
ADMIN = Role(
    slug="admin",
    group_name="Platform admins",
    description="Imports inputs, edits the taxonomy, launches generation batches and annotation, unlocks logins.",
    permissions=(
        "inputs.*",
        "generation.*",
        "annotation.*",
        "preferences.*",
        "evaluation.*",
        "rewardmodel.view_*",
        "rl.view_*",
        # Collection rounds launch batches and open annotation tasks: the admins' work too.
        "rl.*_collectionround",
        "rl.*_collectionschedule",
        "authtoken.add_token",
        "authtoken.view_token",
        # The login lockout: see who is locked out and unlock them (delete the attempt row).
        "axes.view_*",
        "axes.delete_accessattempt",
    ),
    staff=True,
)
ML_ENGINEER = Role(
    slug="ml_engineer",
    group_name="ML engineers",
    description="Builds preference datasets, trains reward models and runs RL.",
    permissions=(
        "inputs.view_*",
        "generation.view_*",
        "annotation.view_*",
        "preferences.view_*",
        "preferences.add_preferencedataset",
        "preferences.delete_preferencedataset",
        "preferences.add_feedbackevent",
        "evaluation.view_*",
        "rewardmodel.*",
        "rl.*",
        "authtoken.add_token",
        "authtoken.view_token",
    ),
    staff=True,
)
ROLES = {role.slug: role for role in (ANNOTATOR, ADMIN, ML_ENGINEER)}


def _matches(role: Role, app_label: str, codename: str) -> bool:
    key = f"{app_label}.{codename}"
    return any(fnmatchcase(key, pattern) for pattern in role.permissions)


def sync_role_groups() -> None:
    """Create the role groups and give each exactly the permissions its patterns match."""
    from django.contrib.auth.models import Group, Permission

    permissions = list(Permission.objects.select_related("content_type"))
    for role in ROLES.values():
        group, _ = Group.objects.get_or_create(name=role.group_name)
        wanted = [p for p in permissions if _matches(role, p.content_type.app_label, p.codename)]
        group.permissions.set(wanted)


def sync_role_groups_after_migrate(sender, app_config=None, using="default", **kwargs):
    # post_migrate fires once per app, after that app's permissions are created; syncing on every
    # call is idempotent and leaves the groups complete after the last app.
    from django.db import DEFAULT_DB_ALIAS

    if using != DEFAULT_DB_ALIAS:
        return
    sync_role_groups()


def roles_of(user) -> list[Role]:
    if not user.is_authenticated:
        return []
    names = set(user.groups.values_list("name", flat=True))
    return [role for role in ROLES.values() if role.group_name in names]


def assign_role(user, slug: str) -> None:
    """Give a user one role (replacing other roles) and the staff flag that goes with it."""
    from django.contrib.auth.models import Group

    try:
        role = ROLES[slug]
    except KeyError:
        raise ValueError(f"unknown role {slug!r}; choose one of {', '.join(ROLES)}") from None
    role_groups = Group.objects.filter(name__in=[r.group_name for r in ROLES.values()])
    user.groups.remove(*role_groups)
    user.groups.add(Group.objects.get_or_create(name=role.group_name)[0])
    user.refresh_from_db(fields=["is_staff"])


def staff_expected(user) -> bool:
    return user.is_superuser or any(role.staff for role in roles_of(user))


def can_use_admin(user) -> bool:
    return user.is_active and user.is_staff and staff_expected(user)


def keep_staff_flag_in_step(sender, instance, action, reverse=False, pk_set=None, **kwargs):
    """Group changes (admin, API, assign_role) set is_staff from the roles: one source of truth."""
    from django.contrib.auth.models import User

    if action not in {"post_add", "post_remove", "post_clear"} or (reverse and action == "post_clear"):
        return
    # user.groups.add(...) gives the user; group.user_set.add(...) gives the group and user ids.
    users = User.objects.filter(pk__in=pk_set or []) if reverse else [instance]
    for user in users:
        if user.is_superuser:
            continue
        expected = staff_expected(user)
        if user.is_staff != expected:
            User.objects.filter(pk=user.pk).update(is_staff=expected)
            user.is_staff = expected


def role_context(request):
    """Template context: the user's roles, for navigation."""
    from django.utils.functional import SimpleLazyObject

    user = getattr(request, "user", None)
    # Read when a template shows them (the page header), not for every fragment rendered.
    roles = SimpleLazyObject(lambda: [role.slug for role in roles_of(user)] if user is not None else [])
    return {"user_roles": roles, "user_can_use_admin": bool(user and can_use_admin(user))}

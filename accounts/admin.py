"""Admin for accounts. Fields that events announce are read-only here: changing them must go
through accounts.services (which writes the event), never a silent admin edit."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin

from outbox.services import publish

from .models import PhoneVerification, User


@admin.register(User)
class ShowOffUserAdmin(UserAdmin):
    list_display = ("username", "email", "display_name", "phone", "is_active", "is_staff",
                    "date_joined", "deleted_at")
    list_filter = ("is_active", "is_staff", "is_superuser",
                   ("email_verified_at", admin.EmptyFieldListFilter),
                   ("phone_verified_at", admin.EmptyFieldListFilter),
                   ("deleted_at", admin.EmptyFieldListFilter), "date_joined")
    search_fields = ("username", "email", "display_name", "phone")
    ordering = ("-date_joined",)
    readonly_fields = ("username", "email", "email_verified_at", "display_name", "bio", "avatar",
                       "phone", "phone_verified_at", "is_active", "last_login", "date_joined",
                       "deleted_at")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "bio", "avatar", "email", "email_verified_at",
                                "phone", "phone_verified_at")}),
        ("Status", {"fields": ("is_active", "deleted_at", "last_login", "date_joined")}),
        ("Permissions", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
    )
    actions = ["deactivate_selected", "reactivate_selected"]

    def get_readonly_fields(self, request, obj=None):
        # Creating an account needs its username; afterwards it is changed only by the user.
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        # The admin's change view runs in a transaction, so the event commits with the row.
        super().save_model(request, obj, form, change)
        if not change:
            publish("user.registered", {
                "user_id": obj.pk, "username": obj.username, "email": obj.email or None,
                "display_name": obj.display_name,
                "registered_at": obj.date_joined.isoformat().replace("+00:00", "Z"),
            })

    def has_delete_permission(self, request, obj=None) -> bool:
        # Accounts are deleted by anonymising (accounts.services.user_delete), never by a
        # cascade from the admin that would drop ledgers and leave no event.
        return False

    @admin.action(description="Deactivate selected accounts (signs them out, emits events)")
    def deactivate_selected(self, request, queryset):
        from .services import user_deactivate_by_operator

        done = sum(user_deactivate_by_operator(user=user)
                   for user in queryset.filter(is_active=True))
        self.message_user(request, f"Deactivated {done} account(s).", messages.SUCCESS)


@admin.register(PhoneVerification)
class PhoneVerificationAdmin(admin.ModelAdmin):
    list_display = ("phone", "user", "created_at", "expires_at", "attempts", "locked_until",
                    "verified_at")
    list_filter = (("verified_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("phone", "user__username")
    readonly_fields = [f.name for f in PhoneVerification._meta.fields]
    exclude = ("code_hash",)

    def has_add_permission(self, request) -> bool:
        return False


def _reactivate(modeladmin, request, queryset):
    from django.db import transaction
    from django.utils import timezone

    done = 0
    # A deleted account stays deleted: its personal data is gone.
    for user in queryset.filter(is_active=False, deleted_at__isnull=True):
        with transaction.atomic():
            user.is_active = True
            user.save(update_fields=["is_active"])
            publish("user.account_changed", {
                "user_id": user.pk, "change": "reactivated",
                "changed_at": timezone.now().isoformat().replace("+00:00", "Z"),
            })
        done += 1
    modeladmin.message_user(request, f"Reactivated {done} account(s).", messages.SUCCESS)


ShowOffUserAdmin.reactivate_selected = admin.action(
    description="Reactivate selected accounts (not deleted ones; emits events)")(_reactivate)

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import Department, PersonalToken, RoleAssignment, Team, User


class RoleAssignmentInline(admin.TabularInline):
    model = RoleAssignment
    extra = 0


@admin.register(User)
class TetherUserAdmin(UserAdmin):
    inlines = [RoleAssignmentInline]


class TeamInline(admin.TabularInline):
    model = Team
    extra = 0


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [TeamInline]


@admin.register(PersonalToken)
class PersonalTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "lookup", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("lookup", "digest", "created_at", "last_used_at")

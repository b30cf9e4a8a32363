from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from core.models import User

admin.site.register(User, DjangoUserAdmin)
admin.site.site_header = "Notification hub"


class HistoryInline(admin.TabularInline):
    """A record's history rows, shown and never edited: services write them."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from core.models import User

admin.site.register(User, DjangoUserAdmin)
admin.site.site_header = "Notification hub"

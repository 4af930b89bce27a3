from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django_q import admin as q_admin
from django_q import models as q_models

from apps.core.admin_sites import platform_admin

# The queue lives in the public schema and holds every tenant's task rows: it belongs
# to the platform admin only, never to a tenant's admin.
for model, model_admin in [
    (q_models.Schedule, q_admin.ScheduleAdmin),
    (q_models.Success, q_admin.TaskAdmin),
    (q_models.Failure, q_admin.FailAdmin),
    (q_models.OrmQ, q_admin.QueueAdmin),
]:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    platform_admin.register(model, model_admin)

platform_admin.register(User, UserAdmin)
platform_admin.register(Group, GroupAdmin)

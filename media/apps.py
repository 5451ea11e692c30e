from django.apps import AppConfig


class MediaConfig(AppConfig):
    label = "media"
    default_auto_field = "django.db.models.BigAutoField"
    name = "media"

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class RelayConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "relay"

    def ready(self) -> None:
        # Each domain app registers its Kafka event handlers in its own `handlers.py`.
        autodiscover_modules("handlers")

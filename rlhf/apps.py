from django.apps import AppConfig


class RlhfConfig(AppConfig):
    name = "rlhf"
    verbose_name = "RLHF loop"

from django.apps import AppConfig


class FrontendConfig(AppConfig):
    name = "frontend"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from frontend.login_throttle import slow_down

        user_login_failed.connect(slow_down, dispatch_uid="frontend.login_throttle")

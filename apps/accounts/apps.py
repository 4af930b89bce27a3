from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.accounts.authentication import forget_api_key
        from apps.accounts.models import ApiKey

        def forget(sender: type, instance: ApiKey, **kwargs: object) -> None:
            forget_api_key(instance.prefix)

        post_save.connect(forget, sender=ApiKey, weak=False, dispatch_uid="forget_key")
        post_delete.connect(forget, sender=ApiKey, weak=False, dispatch_uid="forget_kd")

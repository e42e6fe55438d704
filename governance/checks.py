"""System checks for the governance core."""

from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def jwt_key_differs_from_secret_key(app_configs, **kwargs):
    from django.conf import settings

    if settings.SIMPLE_JWT["SIGNING_KEY"] == settings.SECRET_KEY:
        return [checks.Error("JWT signing key equals SECRET_KEY.", id="governance.E001")]
    return []

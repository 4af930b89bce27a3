"""Documents API-key authentication in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a key issued to your organisation "
            "(`create_api_key`, the admin or Settings → API keys). "
            "`predict` keys reach the prediction doors and feedback only.",
        }


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.BearerApiKeyAuthentication"
    name = "BearerKeyAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {"type": "http", "scheme": "bearer"}

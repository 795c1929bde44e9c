"""Every router of the API, mounted under /api/v1 by ``api.main.create_app``."""

from api.routes import analytics, articles, assistant, auth, cases, health, search, suggest, webhooks

ROUTERS = [
    health.router,
    auth.router,
    articles.router,
    cases.router,
    search.router,
    suggest.router,
    webhooks.router,
    analytics.router,
    assistant.router,
]

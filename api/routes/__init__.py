"""Every router of the API, mounted under /api/v1 by ``api.main.create_app``."""

from api.routes import auth, health, search, suggest

ROUTERS = [
    health.router,
    auth.router,
    search.router,
    suggest.router,
]

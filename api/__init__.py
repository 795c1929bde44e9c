"""The HTTP and web edge of tac-kb: FastAPI routes under /api/v1 and the server-rendered portal.

Stands on ``kb`` and ``ingest``; nothing imports ``api``. Build the app with ``api.main.create_app(settings)``.
"""

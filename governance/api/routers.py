from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """Routes answer with and without a trailing slash (DESIGN §5 writes paths without one)."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"

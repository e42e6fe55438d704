"""drf-spectacular hooks."""


def drop_trailing_slashes(result, generator, request, public):
    """Document paths as DESIGN §5 writes them (``/api/v1/systems/{id}``); both forms are served."""
    result["paths"] = {(path.rstrip("/") or "/"): item for path, item in result["paths"].items()}
    return result

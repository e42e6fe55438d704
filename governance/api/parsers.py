"""Request parsers."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class VigilJSONParser(JSONParser):
    """DRF's strict JSON parser (NaN and Infinity refused) that also answers 400, not 500, for bodies
    nested deeper than Python's parser can follow."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc

"""The committed OpenAPI document (docs/openapi.yaml) matches what the code generates."""

from pathlib import Path

from django.core.management import call_command

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def test_committed_openapi_document_is_current(tmp_path):
    generated = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(generated))

    assert generated.read_text() == DOC.read_text(), "docs/openapi.yaml is stale: run `make schema`"

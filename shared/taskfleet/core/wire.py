"""The text rules of what crosses the wire, with no dependency but pydantic: ids and storable
text. The queue messages (`messages.py`) and the API's bodies (`taskfleet.client.models`,
which a client imports without the server's dependencies) share them."""

from typing import Annotated

from pydantic import Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

# Free text that PostgreSQL can store: text and jsonb cannot hold U+0000, so it is refused
# at the door (and the schema says so), not at the insert.
StorableText = Annotated[
    str, StringConstraints(pattern=r"^[^\x00]*$"), Field(description="Any text but NUL.")
]

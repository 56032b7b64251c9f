"""Which of the simulator's files are complete and where they belong. Pure: paths in, facts out.

The file sink writes `<data>/<topic>/date=YYYY-MM-DD/hour=HH/<topic>-YYYYMMDDTHH-NNNNN.avro`,
under a hidden `.<name>.inprogress` name until the file is complete; names that start with `.`
or `_` (the ledger, run records, locks) are never data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from retail_loader.tables import ENTITIES

NAME = re.compile(r"^(?P<topic>[a-z]+)-(?P<hour>\d{8}T\d{2})-(?P<part>\d{5})\.avro$")


@dataclass(frozen=True, order=True)
class DataFile:
    relative: str
    """Path under the data directory, with `/` separators: the file's identity in the load log."""
    entity: str
    hour: str
    """`YYYYMMDDTHH` of the event-time hour."""
    part: int

    @property
    def topic(self) -> str:
        return self.entity


def complete_files(data: Path) -> list[DataFile]:
    """Every complete hourly file under `data`, in hour, topic and part order."""
    found = []
    for entity in ENTITIES:
        root = data / entity
        if not root.is_dir():
            continue
        for path in root.glob("date=*/hour=*/*.avro"):
            match = NAME.match(path.name)
            if match is None or match["topic"] != entity:
                continue
            found.append(DataFile(path.relative_to(data).as_posix(), entity, match["hour"], int(match["part"])))
    return sorted(found, key=lambda f: (f.hour, ENTITIES.index(f.entity), f.part))

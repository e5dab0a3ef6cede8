"""Ferry ingest service: Dataset ingestion: versioned, profiled datasets in MinIO/S3, SQL imports, recipes.

Arrow's C++ code picks its default memory pool once, when pyarrow loads, from
``ARROW_DEFAULT_MEMORY_POOL``. Importing this package (which ``ferry-ingest`` does before
anything loads pyarrow) sets it to ``system`` unless it is already set, so that what Arrow
allocates without being handed a pool (Acero's group-by in the profile, among others) goes
through the same tuned allocator as the rest (see :mod:`ferry_ingest.memory`).
"""

import os

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

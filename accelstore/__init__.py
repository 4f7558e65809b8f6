"""accelstore: wearable-accelerometer corpora in one chunked Zarr store.

``open_store(path_or_url)`` opens a store for reading; ``accelstore ingest`` (or
:func:`accelstore.pipelines.ingest.ingest`) builds one from raw device files.
"""

from accelstore.store import Store, open_store

__all__ = ["Store", "open_store"]

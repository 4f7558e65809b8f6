"""The store layer: the chunked Zarr store, and the only code that reads or writes it.

One module per concern (docs/architecture.md, "The store's rules"):

- :mod:`~accelstore.store.layout`: format version, arrays, chunking, codecs, fill values;
- :mod:`~accelstore.store.days`: the window axis in days and the day summary of a row;
- :mod:`~accelstore.store.root_group`: creating, opening and growing the root group;
- :mod:`~accelstore.store.checked_reads`: reads that raise StoreDamageError instead of returning damage;
- :mod:`~accelstore.store.query_times`: query times → window indices;
- :mod:`~accelstore.store.lazy_dataset`: the complete participants as a lazy xarray Dataset;
- :mod:`~accelstore.store.reading`: :class:`Store`, the reader;
- :mod:`~accelstore.store.writing`: the driver's :class:`MetadataWriter` and a worker's :class:`ParticipantWriter`;
- :mod:`~accelstore.store.lease`: the writer lease;
- :mod:`~accelstore.store.validation_set`: the pretext validation set and the hold-out;
- :mod:`~accelstore.store.window_files`: saving a query's windows to a file.
"""

from accelstore.store.checked_reads import (
    check_days,
    check_present,
    read_checked,
    read_column,
    read_day_summary,
    read_table,
)
from accelstore.store.days import day_span, recorded_days, summarise_days
from accelstore.store.layout import (
    ABSENT_TEXT,
    DAY_ARRAYS,
    DAY_SUMMARY_CHUNK,
    DEFAULT_MAX_DAYS,
    FORMAT_VERSION,
    LABEL_ARRAY,
    TABLE_CHUNK,
    TABLE_COLUMNS,
    WINDOW_ARRAYS,
    WINDOWS_PER_CHUNK,
    Column,
    Status,
    WindowArray,
    acc_compressors,
    acc_to_g,
    checked_compressors,
    committed_shape,
    window_arrays_of,
)
from accelstore.store.lease import WriterLease
from accelstore.store.query_times import MAX_WINDOW_INDEX
from accelstore.store.reading import Store, open_store
from accelstore.store.root_group import create_store, open_arrays, open_group
from accelstore.store.validation_set import (
    HOLDOUT_ATTR,
    VALIDATION_SET_GROUP,
    ValidationSet,
    read_holdout,
    read_validation_set,
    record_holdout,
    write_validation_set,
)
from accelstore.store.writing import MetadataWriter, ParticipantWriter, store_writer

__all__ = [
    "ABSENT_TEXT",
    "DAY_ARRAYS",
    "DAY_SUMMARY_CHUNK",
    "DEFAULT_MAX_DAYS",
    "FORMAT_VERSION",
    "HOLDOUT_ATTR",
    "LABEL_ARRAY",
    "MAX_WINDOW_INDEX",
    "TABLE_CHUNK",
    "TABLE_COLUMNS",
    "VALIDATION_SET_GROUP",
    "WINDOWS_PER_CHUNK",
    "WINDOW_ARRAYS",
    "Column",
    "MetadataWriter",
    "ParticipantWriter",
    "Status",
    "Store",
    "ValidationSet",
    "WindowArray",
    "WriterLease",
    "acc_compressors",
    "acc_to_g",
    "check_days",
    "check_present",
    "checked_compressors",
    "committed_shape",
    "create_store",
    "day_span",
    "open_arrays",
    "open_group",
    "open_store",
    "read_checked",
    "read_column",
    "read_day_summary",
    "read_holdout",
    "read_table",
    "read_validation_set",
    "record_holdout",
    "recorded_days",
    "store_writer",
    "summarise_days",
    "window_arrays_of",
    "write_validation_set",
]

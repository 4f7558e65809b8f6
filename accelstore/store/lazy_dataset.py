"""The store as a lazy :class:`xarray.Dataset` of its complete participants, indexed by id.

Built on xarray's lazy indexing (no Dask unless asked for): nothing is read until values are
asked for, and then only the chunks they need, each through its checksum.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.backends import BackendArray
from xarray.core import indexing

from accelstore.errors import StoreDamageError
from accelstore.grid import WINDOWS_PER_DAY
from accelstore.store.layout import TABLE_COLUMNS, acc_to_g


class _CheckedBackendArray(BackendArray):
    """Lazy, outer-indexed access to one Zarr array, optionally decoded (int16 milli-g → float32 g)."""

    def __init__(self, array: zarr.Array, shape: tuple[int, ...], decode_acc: bool = False):
        self.array = array
        self.decode_acc = decode_acc
        self.shape = shape
        self.dtype = np.dtype("float32") if decode_acc else array.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._getitem)

    def _getitem(self, key: tuple) -> np.ndarray:
        try:
            raw = self.array.oindex[key]
        except (ValueError, RuntimeError) as error:
            raise StoreDamageError(f"a chunk of '{self.array.name.lstrip('/')}' is damaged ({error})") from None
        return acc_to_g(raw) if self.decode_acc else raw


def participants_dataset(
    arrays: Mapping[str, zarr.Array], shape: tuple[int, int], participants: pd.DataFrame, attrs: dict, dask: bool = False
) -> xr.Dataset:
    """``acc`` (float32 g), the per-window arrays and the day summary of the complete participants.

    ``arrays``, ``shape``: the store's open arrays and committed shape. ``participants``: the
    complete participants' table rows (:attr:`accelstore.store.Store.participants`): the
    dimension ``participant`` is indexed by their ids, and their table columns (``row``, ``day0``,
    ``n_windows`` …) are its coordinates; reserved, failed and unfinished rows are not in it.
    ``dask=True`` gives Dask arrays with one chunk per participant-day.
    """
    n_rows, windows = shape
    sizes = {"participant": n_rows, "window": windows, "day": windows // WINDOWS_PER_DAY}
    variables = {}
    for name, array in arrays.items():
        if name in TABLE_COLUMNS:
            continue  # the checked table, below
        dims = tuple(array.metadata.dimension_names)
        extent = tuple(sizes.get(dim, length) for dim, length in zip(dims, array.shape))
        data = indexing.LazilyIndexedArray(_CheckedBackendArray(array, extent, decode_acc=(name == "acc")))
        variables[name] = xr.Variable(dims, data, attrs=dict(array.attrs))
    variables["acc"].attrs["units"] = "g"
    ds = xr.Dataset(variables, attrs=attrs).isel(participant=participants["row"].to_numpy(np.int64))
    coords = {"participant": participants.index.to_numpy()}
    for name, values in participants.items():
        same_meaning = name in TABLE_COLUMNS and name != "day0"  # day0 is a time here, not seconds
        coords[name] = xr.Variable("participant", values.to_numpy(), attrs=dict(arrays[name].attrs) if same_meaning else {})
    ds = ds.assign_coords(coords)
    if dask:
        ds = ds.chunk({"participant": 1, "window": WINDOWS_PER_DAY})
    return ds

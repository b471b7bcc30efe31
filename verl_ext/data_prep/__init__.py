"""Turn hub math data sets into verl's RL parquet schema, wrapped with the RPO system prompt.

``data_prep/prepare.py`` is the command line; this package holds what it runs so that tests and other tools (an
offline cache builder needs the same prompts and ``extra_info.index``) can import it:

* :mod:`.example`: one problem as verl's row (schema, ``extra_info.index``);
* :mod:`.answers`: getting a bare problem / ground truth out of each data set's own fields;
* :mod:`.specs`: the registry, one small mapping function per data set;
* :mod:`.sources`: reading a data set's rows from the hub or from a local copy in the hub's file layout;
* :mod:`.pipeline`: rows -> deduplicated, indexed verl rows -> parquet.
"""

from verl_ext.data_prep.example import Example, content_index, to_verl_row
from verl_ext.data_prep.pipeline import PrepareStats, prepare, write_parquet
from verl_ext.data_prep.specs import REGISTRY, DatasetSpec, get_spec

__all__ = [
    "REGISTRY",
    "DatasetSpec",
    "Example",
    "PrepareStats",
    "content_index",
    "get_spec",
    "prepare",
    "to_verl_row",
    "write_parquet",
]

"""Input and output: where data lives and how it is read, checked and written.

`uris` (database URLs, folders, safe names, engines), `tables` (read and write one table of
a database or a folder of Parquet/CSV files), `validation` (collect every problem of a
source, quarantine bad rows), `sources` (the data contract: leads, activities, outcomes),
`publish` (every score write, in one transaction) and `locking` (one run at a time).

Layer 2: imports only `errors` and `config`.
"""

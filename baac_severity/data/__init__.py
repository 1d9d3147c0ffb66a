"""Sources, cleaning and storage of the BAAC tables: schema and codes, loaders of both publication
formats, chunked ingestion, SCD2 histories, the stable split."""

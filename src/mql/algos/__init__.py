"""The algorithms: one package per algorithm (`mql`, `pearl`), their shared base
(`config_base`, `agent`) and the registry that lists them (`registry`)."""

"""One module per pipeline stage: `paretoflow/stages/<stage>.py` holds the stage's config
section (and its profile budgets), `run(params, root, **options) -> Result`, its CLI
command under the stage's own name, and `STAGE`, its registry declaration.

This file imports nothing: a stage's code hash is the import closure of its own module,
and an `__init__` that imported every stage would put every stage in every closure. The
registry, in order, is `paretoflow.pipeline`.
"""

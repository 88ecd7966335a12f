"""Task definitions, one file a task: its configuration (presets per scale) and where
its data comes from. Everything else is the shared machinery of
:mod:`surrogateshap.tasks`; the registry (``surrogateshap.tasks.get_task``) imports
these files on first use."""

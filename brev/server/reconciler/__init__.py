"""Background work that moves every instance from what the cloud says toward what the user wants.

`loop.Reconciler` claims instances that are due and runs one `steps` transition for each in a
worker pool; `sweep` finds machines carrying our tags that the database does not know (or knows
as deleted) and terminates them. Provider calls never happen inside a database transaction.
"""

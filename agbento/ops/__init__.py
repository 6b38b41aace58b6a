"""A serving process's life: the process set up before the service (`bootstrap`), the
drain on SIGTERM (`shutdown`), the watch over sibling workers (`supervision`, `workers`).

May import: agbento.core.
"""

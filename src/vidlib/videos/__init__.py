"""The video library: list, search, sort, cursor, recent, by key, delete, restore."""

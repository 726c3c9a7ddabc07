"""Users, passwords, tokens and the ``CurrentUser`` dependency."""

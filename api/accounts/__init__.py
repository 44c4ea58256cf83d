"""Operator accounts (users with a role and a password) and integrator API keys, kept in PostgreSQL.

Logging in (`POST /api/v1/auth/token`) trades a username and password for a short-lived JWT; admins
manage users and keys over the API or with `fleet users`. Deciding access from a token or key is
`api.auth`'s job.
"""

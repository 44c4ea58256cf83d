"""The shared vocabulary of fleetbridge: topics, wire payloads, cached state and the database schema.

Every other package imports from here; this package imports nobody else in the project.
"""

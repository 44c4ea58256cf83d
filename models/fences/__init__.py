"""Geofence shapes and their GeoJSON validation, shared by the API (which refuses bad fences) and the engine."""

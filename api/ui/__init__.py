"""The operator web app: a page shell, its ES modules and vendored libraries, served by the API (no CDN)."""

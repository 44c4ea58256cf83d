"""The operator page: one self-contained HTML file (no CDN) showing the fleet's live state."""

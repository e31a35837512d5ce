"""Leaf layer: settings and the connection options built from them (imports nothing of ours
but the schemas)."""
